"""Authentication middlewares through the real binary: api-key, basic-auth (plain, bcrypt, {SHA}, apr1) and
jwt (every algorithm family, JWKS, exp/nbf/iss/aud, wrong alg/key, ``none``, spoofed claim headers), plus
chain order: a CORS middleware listed before an auth middleware decorates its 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import bcrypt
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from harness import Backend, Gateway
from mw_support import Process, assert_error, echoed

SECRET = "s3cret-hmac-key-" + "x" * 50  # 64 bytes: long enough for HS512

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "%(backend)s"}]

[middlewares.key]
type = "api-key"
keys = ["k-one", "k-two"]
query_param = "api_key"
[middlewares.key-forwarded]
type = "api-key"
header = "X-Token"
keys = ["k-one"]
forward_key = true
[middlewares.basic]
type = "basic-auth"
username = "admin"
password = "plain-pw"
users = ["bob:%(bcrypt)s", "sha:%(sha)s", "apr:%(apr1)s"]
realm = "staff"
header_field = "X-Auth-User"
[middlewares.cors]
type = "cors"
allowed_origins = ["https://app.example"]
[middlewares.jwt-hs256]
type = "jwt"
value = "%(secret)s"
[middlewares.jwt-hs512]
type = "jwt"
value = "%(secret)s"
alg = "HS512"
[middlewares.jwt-rs256]
type = "jwt"
alg = "RS256"
public_key = '''%(rsa)s'''
[middlewares.jwt-ps384]
type = "jwt"
alg = "PS384"
public_key = '''%(rsa)s'''
[middlewares.jwt-es256]
type = "jwt"
alg = "ES256"
public_key = '''%(ec)s'''
[middlewares.jwt-eddsa]
type = "jwt"
alg = "EdDSA"
public_key = '''%(ed)s'''
[middlewares.jwt-jwks]
type = "jwt"
alg = "RS256"
jwks_url = "%(jwks)s"
[middlewares.jwt-claims]
type = "jwt"
value = "%(secret)s"
issuer = "https://issuer.example"
audience = "api"
leeway = "5s"
cookie = "session"
claims_to_headers = {sub = "X-JWT-Subject", role = "X-Role", groups = "X-Groups"}

[routers.key]
rule = "PathPrefix(`/key`)"
service = "app"
middlewares = ["key"]
[routers.key-forwarded]
rule = "PathPrefix(`/fwd`)"
service = "app"
middlewares = ["key-forwarded"]
[routers.basic]
rule = "PathPrefix(`/basic`)"
service = "app"
middlewares = ["basic"]
[routers.order]
rule = "PathPrefix(`/order`)"
service = "app"
middlewares = ["cors", "key"]
"""
JWT_ROUTES = ("hs256", "hs512", "rs256", "ps384", "es256", "eddsa", "jwks", "claims")
CONFIG += "".join(f"""
[routers.jwt-{n}]
rule = "PathPrefix(`/jwt-{n}`)"
service = "app"
middlewares = ["jwt-{n}"]
""" for n in JWT_ROUTES)

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def apr1(password: str) -> str:
    return subprocess.run(["openssl", "passwd", "-apr1", password], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("auth")
    jwks_file = tmp / "jwks.json"
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA.public_key()))
    jwks_file.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    backend = Backend("app")
    auth = Process("authserver.py", "--jwks", str(jwks_file))
    config = CONFIG % {
        "backend": backend.url, "secret": SECRET, "rsa": pem(RSA), "ec": pem(EC), "ed": pem(ED),
        "jwks": f"{auth.url}/jwks", "bcrypt": bcrypt.hashpw(b"bcrypt-pw", bcrypt.gensalt(4)).decode(),
        "sha": "{SHA}" + base64.b64encode(hashlib.sha1(b"sha-pw").digest()).decode(), "apr1": apr1("apr-pw"),
    }
    g = Gateway(config, tmp)
    yield g
    g.stop()
    auth.stop()
    backend.stop()


@pytest.fixture(scope="module")
def client(gw: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


# ------------------------------------------------------------------------------------------------ api-key

def test_api_key_header_allows_and_is_removed_before_forwarding(client: httpx.Client) -> None:
    seen = echoed(client.get("/key/x", headers={"X-API-Key": "k-two"}))
    assert "x-api-key" not in seen["headers"]


def test_api_key_query_parameter_allows_and_is_removed(client: httpx.Client) -> None:
    seen = echoed(client.get("/key/x?a=1&api_key=k-one&b=2"))
    assert (seen["path"], seen["query"]) == ("/key/x", "a=1&b=2")


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "k-three"}, {"X-API-Key": "k-on"}])
def test_api_key_missing_or_wrong_gets_401_json(client: httpx.Client, headers: dict[str, str]) -> None:
    assert_error(client.get("/key/x", headers=headers), 401, {"error": "Invalid or missing API key"})


def test_api_key_forward_key_keeps_the_header(client: httpx.Client) -> None:
    assert echoed(client.get("/fwd", headers={"X-Token": "k-one"}))["headers"]["x-token"] == ["k-one"]
    assert client.get("/fwd", headers={"X-API-Key": "k-one"}).status_code == 401


# --------------------------------------------------------------------------------------------- basic-auth

@pytest.mark.parametrize("user,password", [("admin", "plain-pw"), ("bob", "bcrypt-pw"), ("sha", "sha-pw"),
                                           ("apr", "apr-pw")])
def test_basic_auth_accepts_every_hash_kind_and_passes_the_user(client: httpx.Client, user: str,
                                                               password: str) -> None:
    for _ in range(2):  # the second request hits the verified-credentials cache
        seen = echoed(client.get("/basic", auth=(user, password)))
        assert seen["headers"]["x-auth-user"] == [user]
        assert "authorization" not in seen["headers"]


@pytest.mark.parametrize("auth,message", [(None, "Missing Authorization header"),
                                          (("bob", "wrong"), "Invalid credentials"),
                                          (("nobody", "plain-pw"), "Invalid credentials"),
                                          (("admin", "plain-pw "), "Invalid credentials")])
def test_basic_auth_rejects_with_challenge(client: httpx.Client, auth: Any, message: str) -> None:
    r = client.get("/basic", auth=auth, headers={"X-Auth-User": "spoofed"})
    assert_error(r, 401, {"error": message}, www_authenticate='Basic realm="staff"')


def test_basic_auth_user_header_cannot_be_spoofed(client: httpx.Client) -> None:
    seen = echoed(client.get("/basic", auth=("admin", "plain-pw"), headers={"X-Auth-User": "root"}))
    assert seen["headers"]["x-auth-user"] == ["admin"]


# ---------------------------------------------------------------------------------------------------- jwt

def token(alg: str, key: Any, **claims: Any) -> str:
    payload = {"sub": "user-1", "exp": int(time.time()) + 300, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=alg,
                      headers={"kid": "k1"} if alg == "RS256" else None)


FAMILIES = [("hs256", "HS256", SECRET), ("hs512", "HS512", SECRET), ("rs256", "RS256", RSA),
            ("ps384", "PS384", RSA), ("es256", "ES256", EC), ("eddsa", "EdDSA", ED), ("jwks", "RS256", RSA)]


@pytest.mark.parametrize("route,alg,key", FAMILIES)
def test_jwt_valid_token_of_every_family_passes_with_subject_header(client: httpx.Client, route: str, alg: str,
                                                                   key: Any) -> None:
    r = client.get(f"/jwt-{route}", headers={"Authorization": f"Bearer {token(alg, key)}",
                                             "X-JWT-Subject": "spoofed"})
    assert echoed(r)["headers"]["x-jwt-subject"] == ["user-1"]


INVALID = {"www_authenticate": 'Bearer realm="a3s-gateway", error="invalid_token"'}


@pytest.mark.parametrize("route,alg,key", FAMILIES)
def test_jwt_wrong_key_is_rejected(client: httpx.Client, route: str, alg: str, key: Any) -> None:
    wrong = {"HS256": "x" * 32, "HS512": "x" * 64, "RS256": OTHER_RSA, "PS384": OTHER_RSA,
             "ES256": ec.generate_private_key(ec.SECP256R1()), "EdDSA": ed25519.Ed25519PrivateKey.generate()}[alg]
    r = client.get(f"/jwt-{route}", headers={"Authorization": f"Bearer {token(alg, wrong)}"})
    assert_error(r, 401, {"error": "JWT validation failed: InvalidSignatureError"}, **INVALID)


def test_jwt_expired_token_is_rejected_and_spoofed_subject_dropped(client: httpx.Client) -> None:
    r = client.get("/jwt-hs256", headers={"Authorization": f"Bearer {token('HS256', SECRET, exp=1000)}"})
    assert_error(r, 401, {"error": "JWT validation failed: ExpiredSignatureError"}, **INVALID)


def test_jwt_not_yet_valid_token_is_rejected(client: httpx.Client) -> None:
    t = token("HS256", SECRET, nbf=int(time.time()) + 3600)
    assert_error(client.get("/jwt-hs256", headers={"Authorization": f"Bearer {t}"}), 401,
                 {"error": "JWT validation failed: ImmatureSignatureError"}, **INVALID)


def test_jwt_token_without_exp_is_rejected(client: httpx.Client) -> None:
    t = token("HS256", SECRET, exp=None)
    assert_error(client.get("/jwt-hs256", headers={"Authorization": f"Bearer {t}"}), 401,
                 {"error": "JWT validation failed: MissingRequiredClaimError"}, **INVALID)


@pytest.mark.parametrize("alg", ["HS512", "HS384"])
def test_jwt_algorithm_is_pinned(client: httpx.Client, alg: str) -> None:
    t = token(alg, SECRET)
    assert_error(client.get("/jwt-hs256", headers={"Authorization": f"Bearer {t}"}), 401,
                 {"error": "JWT validation failed: InvalidAlgorithmError"}, **INVALID)


def test_jwt_alg_none_is_rejected(client: httpx.Client) -> None:
    t = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert_error(client.get("/jwt-hs256", headers={"Authorization": f"Bearer {t}"}), 401,
                 {"error": "JWT validation failed: InvalidAlgorithmError"}, **INVALID)


def test_jwt_rs256_public_key_used_as_hmac_secret_is_rejected(client: httpx.Client) -> None:
    """The classic key-confusion forgery: HS256 signed with the RSA public key PEM as the secret."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(
        json.dumps({"sub": "x", "exp": int(time.time()) + 60}).encode())
    forged = signing_input + b"." + b64(hmac.digest(pem(RSA).encode(), signing_input, "sha256"))
    assert_error(client.get("/jwt-rs256", headers={"Authorization": f"Bearer {forged.decode()}"}), 401,
                 {"error": "JWT validation failed: InvalidAlgorithmError"}, **INVALID)


def test_jwt_missing_token_gets_plain_bearer_challenge(client: httpx.Client) -> None:
    assert_error(client.get("/jwt-hs256"), 401, {"error": "Missing token"},
                 www_authenticate='Bearer realm="a3s-gateway"')


def test_jwt_claims_to_headers_from_cookie_with_issuer_and_audience(client: httpx.Client) -> None:
    t = token("HS256", SECRET, iss="https://issuer.example", aud="api", role="admin", groups=["a", "b"])
    seen = echoed(client.get("/jwt-claims", headers={"Cookie": f"theme=dark; session={t}", "X-Role": "root"}))
    assert seen["headers"]["x-jwt-subject"] == ["user-1"]
    assert seen["headers"]["x-role"] == ["admin"]
    assert seen["headers"]["x-groups"] == ['["a","b"]']


@pytest.mark.parametrize("claims,error", [({"iss": "https://evil.example", "aud": "api"}, "InvalidIssuerError"),
                                          ({"iss": "https://issuer.example", "aud": "web"}, "InvalidAudienceError")])
def test_jwt_issuer_and_audience_are_checked(client: httpx.Client, claims: dict[str, str], error: str) -> None:
    t = token("HS256", SECRET, **claims)
    r = client.get("/jwt-claims", headers={"Cookie": f"session={t}", "X-Role": "root"})
    assert_error(r, 401, {"error": f"JWT validation failed: {error}"}, **INVALID)


# ---------------------------------------------------------------------------------------------- chain order

def test_auth_failure_still_gets_cors_headers_of_earlier_middleware(client: httpx.Client) -> None:
    r = client.get("/order", headers={"Origin": "https://app.example"})
    assert_error(r, 401, {"error": "Invalid or missing API key"},
                 access_control_allow_origin="https://app.example", vary="Origin")
    ok = client.get("/order", headers={"Origin": "https://app.example", "X-API-Key": "k-one"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
