"""Security defaults through the real binary: the admin API's token (required off loopback, Bearer, 401
otherwise, redacted in /api/gateway/config), no secret in logs or error responses, and identity headers the
gateway sets that a client cannot spoof (one table)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import jwt
import pytest
from harness import Gateway, wait_until
from mw_support import Process

TOKEN = "admin-SECRET-token-0123456789"
JWT_SECRET = "jwt-SECRET-v4lue-" + "x" * 40
API_KEY = "apikey-SECRET-1"
BASIC_PW = "basic-SECRET-pw"
REDIS_PW = "redisSECRETpw"
HOOK_SECRET = "hook-SECRET-sig"
SECRETS = [TOKEN, JWT_SECRET, API_KEY, BASIC_PW, REDIS_PW, HOOK_SECRET]


def _admin_get(g: Gateway, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(g.admin + path, headers=headers, timeout=5)


def _wait_running_with_token(g: Gateway, token: str) -> None:
    def running() -> bool:
        if g.proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {g.proc.returncode}:\n{g.logs()}")
        return _admin_get(g, "/api/gateway/health", token).json().get("state") == "running"
    wait_until(running, 20, what="gateway running")


# ------------------------------------------------------------------------------------------------- admin API

def test_admin_off_loopback_without_token_refuses_to_start(tmp_path: Path) -> None:
    g = Gateway('[entrypoints.web]\naddress = "127.0.0.1:{web}"\n[admin]\naddress = "0.0.0.0:{admin}"\n',
                tmp_path, wait=False)
    assert g.proc.wait(30) == 1
    out = g.logs()
    assert "admin.token" in out and "admin.address" in out and "not a loopback address" in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1"])
def test_admin_token_is_required_and_redacted(tmp_path: Path, address: str) -> None:
    g = Gateway(f'[entrypoints.web]\naddress = "127.0.0.1:{{web}}"\n[admin]\naddress = "{address}:{{admin}}"\n'
                f'token = "{TOKEN}"\n', tmp_path, wait=False)
    try:
        _wait_running_with_token(g, TOKEN)
        for path in ("/api/gateway/health", "/api/gateway/config", "/api/gateway/metrics"):
            for bad in (None, "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
                r = _admin_get(g, path, bad)
                assert r.status_code == 401, (path, bad, r.status_code)
                assert r.json() == {"error": "Unauthorized"} and TOKEN not in r.text
            r = httpx.get(g.admin + path, headers={"Authorization": f"Basic {TOKEN}"}, timeout=5)
            assert r.status_code == 401
            assert _admin_get(g, path, TOKEN).status_code == 200
        cfg = _admin_get(g, "/api/gateway/config", TOKEN)
        assert cfg.json()["admin"]["token"] == "***" and TOKEN not in cfg.text
    finally:
        g.stop()
    assert TOKEN not in g.log_path.read_text()


# --------------------------------------------------------------------------------- no secret in logs/errors

SECRETS_CONFIG = f"""
[entrypoints.web]
address = "127.0.0.1:{{web}}"
[admin]
address = "127.0.0.1:{{admin}}"
token = "{TOKEN}"
[services.app.load_balancer]
servers = [{{url = "BACKEND"}}]
[middlewares.jwt]
type = "jwt"
value = "{JWT_SECRET}"
[middlewares.key]
type = "api-key"
keys = ["{API_KEY}"]
[middlewares.basic]
type = "basic-auth"
username = "u"
password = "{BASIC_PW}"
[middlewares.redis]
type = "rate-limit-redis"
rate = 5
redis_url = "redis://:{REDIS_PW}@127.0.0.1:DEADPORT"
[middlewares.hook]
type = "channel-webhook"
platform = "slack"
secret = "{HOOK_SECRET}"
""" + "".join(f"""
[routers.{n}]
rule = "PathPrefix(`/{n}`)"
service = "app"
middlewares = ["{n}"]
""" for n in ("jwt", "key", "basic", "redis", "hook"))


def test_no_secret_in_logs_or_error_responses(tmp_path: Path, backends) -> None:
    from harness import free_port

    b = backends()
    config = SECRETS_CONFIG.replace("BACKEND", b.url).replace("DEADPORT", str(free_port()))
    g = Gateway(config, tmp_path, wait=False, env={"A3S_LOG_LEVEL": "debug"})
    bodies: list[str] = []
    try:
        _wait_running_with_token(g, TOKEN)
        good_jwt = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
        bad_jwt = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, "wrong" * 10, algorithm="HS256")
        basic = base64.b64encode(f"u:{BASIC_PW}".encode()).decode()
        bad_basic = base64.b64encode(b"u:" + BASIC_PW[::-1].encode()).decode()
        with httpx.Client(base_url=g.url, timeout=10) as c:
            exchanges = [
                ("/jwt", {"Authorization": f"Bearer {good_jwt}"}, 200),
                ("/jwt", {"Authorization": f"Bearer {bad_jwt}"}, 401),
                ("/jwt", {"Authorization": "Bearer not.a.jwt"}, 401),
                ("/key", {"X-API-Key": API_KEY}, 200),
                ("/key", {"X-API-Key": API_KEY[:-1]}, 401),
                ("/basic", {"Authorization": f"Basic {basic}"}, 200),
                ("/basic", {"Authorization": f"Basic {bad_basic}"}, 401),
                ("/redis", {}, 200),                                   # redis down: fail-open, logged
                ("/hook", {"X-Slack-Signature": "v0=00", "X-Slack-Request-Timestamp": str(int(time.time()))}, 401),
            ]
            for path, headers, status in exchanges:
                r = c.post(path, content=b'{"type":"event_callback"}', headers=headers)
                assert r.status_code == status, (path, r.status_code, r.text)
                bodies.append(r.text)
        # a bad reload: problems about the secrets' keys, with the secrets next to them
        before = _admin_get(g, "/api/gateway/health", TOKEN).json()["last_reload"]["at"]
        g.write_config(config.replace(f'keys = ["{API_KEY}"]', f'keys = "{API_KEY}"')
                       .replace(f'password = "{BASIC_PW}"', f'password = {{x = "{BASIC_PW}"}}')
                       .replace(f"redis://:{REDIS_PW}@127.0.0.1:", f"redis://:{REDIS_PW}@127.0.0.1:x")
                       .replace(f'value = "{JWT_SECRET}"', f'value = ["{JWT_SECRET}", 1]'))
        import signal
        g.signal(signal.SIGHUP)
        wait_until(lambda: _admin_get(g, "/api/gateway/health", TOKEN).json()["last_reload"]["at"] != before,
                   what="reload answered")
        health = _admin_get(g, "/api/gateway/health", TOKEN)
        assert health.json()["last_reload"]["ok"] is False, health.text
        bodies += [health.text, _admin_get(g, "/api/gateway/config", TOKEN).text]
    finally:
        g.stop()
    logs = g.log_path.read_text()
    assert "redis" in logs.lower()           # the redis failure was logged (with the URL masked)
    assert "middlewares.key.keys" in logs    # and the bad reload's problems
    for secret in SECRETS:
        assert secret not in logs, f"{secret!r} in the gateway log"
        for body in bodies:
            assert secret not in body, f"{secret!r} in a response: {body}"


# ------------------------------------------------------------------------------ identity headers: no spoofing

SPOOF_CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "BACKEND"}]
[middlewares.jwt]
type = "jwt"
value = "JWTSECRET"
claims_to_headers = {sub = "X-JWT-Subject", role = "X-JWT-Role"}
[middlewares.fa]
type = "forward-auth"
forward_auth_url = "AUTH/allow"
forward_auth_response_headers = ["X-User-Id", "X-User-Role"]
[middlewares.basic]
type = "basic-auth"
username = "u"
password = "p"
header_field = "X-Auth-User"
[middlewares.privacy]
type = "privacy-router"
tee_service = "app"
""" + "".join(f"""
[routers.{n}]
rule = "PathPrefix(`/{n}`)"
service = "app"
middlewares = ["{n}"]
""" for n in ("jwt", "fa", "basic", "privacy")) + """
[routers.plain]
rule = "PathPrefix(`/plain`)"
service = "app"
"""

# (path, header the client forges, what the backend must see: a value, or None for "absent")
# X-Forwarded-For from a peer outside ``forwarded_headers.trusted_ips`` is replaced by the peer address.
SPOOF_CASES = [
    ("/plain", "X-Real-IP", "127.0.0.1"),
    ("/plain", "X-Forwarded-Proto", "http"),
    ("/plain", "X-Forwarded-Host", "site.example"),
    ("/plain", "X-Forwarded-For", "127.0.0.1"),
    ("/jwt", "X-JWT-Subject", "alice"),                 # the claim replaces the client's copy
    ("/jwt", "X-JWT-Role", None),                       # a claim the token lacks: the client's copy is dropped
    ("/fa", "X-User-Id", "alice"),                      # the auth service's answer replaces it
    ("/fa", "X-User-Role", None),                       # a listed header the auth service did not send: dropped
    ("/basic", "X-Auth-User", "u"),
    ("/privacy", "X-Privacy-Level", "public"),
]


@pytest.fixture(scope="module")
def spoof_gateway(tmp_path_factory):  # type: ignore[no-untyped-def]
    from harness import Backend

    app, auth = Backend("app"), Process("authserver.py")
    g = Gateway(SPOOF_CONFIG.replace("BACKEND", app.url).replace("AUTH", auth.url),
                tmp_path_factory.mktemp("spoof"))
    yield g
    g.stop()
    auth.stop()
    app.stop()


@pytest.mark.parametrize("path,header,expected", SPOOF_CASES, ids=[f"{p}-{h}" for p, h, _ in SPOOF_CASES])
def test_identity_headers_cannot_be_spoofed(spoof_gateway, path: str, header: str, expected: str | None) -> None:
    forged = "6.6.6.6" if header == "X-Forwarded-For" else "restricted" if "Privacy" in header else "mallory"
    headers = {"Host": "site.example", header: forged}
    if path == "/jwt":
        t = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, "JWTSECRET", algorithm="HS256")
        headers["Authorization"] = f"Bearer {t}"
    if path == "/basic":
        headers["Authorization"] = "Basic " + base64.b64encode(b"u:p").decode()
    r = httpx.post(spoof_gateway.url + path, content=b'{"messages":[{"role":"user","content":"hi"}]}',
                   headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    seen = r.json()["headers"].get(header.lower())
    assert seen == ([expected] if expected is not None else None), (header, seen)
