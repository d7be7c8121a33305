"""Each middleware's visible effect over HTTP/1.1, h2c and HTTP/2 over TLS, through the real binary (two
workers): headers, the path rewrites, redirect-scheme and redirect-regex, basic-auth, api-key, jwt, ip-allow,
cors, compress, body-limit (413), rate-limit (429) and circuit-breaker (503). Same gateway config as
test_both_protocols.py (both_protocols.py); assertions are fixed values, the same for every protocol except where
the scheme itself decides (redirect-scheme on https).
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from both_protocols import PROTOCOLS, SECRET, Client, Env, gateway_env, routed_to
from mw_support import assert_error, echoed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from gateway_env(tmp_path_factory)


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, env: Env) -> Client:
    return Client(env, request.param)


# --------------------------------------------------------------------------------------------- middlewares

def test_headers_middleware_sets_adds_and_removes_on_both_sides(client: Client) -> None:
    r = client.get("/hdr", headers={"X-Set": "client", "X-Drop-Me": "x", "X-Multi": "client", "X-Remove": "x"})
    seen = echoed(r)["headers"]
    assert seen["x-set"] == ["set"] and seen["x-multi"] == ["client", "added"]
    assert "x-drop-me" not in seen and "x-remove" not in seen
    assert r.headers["x-resp"] == "r" and r.headers.get_list("x-backend") == ["a", "also"]
    assert "server" not in r.headers


@pytest.mark.parametrize("url,raw_path", [("/strip/users?x=1", "/users?x=1"), ("/add/x?q=1", "/base/add/x?q=1"),
                                          ("/replace/me?q=2", "/fixed?q=2")])
def test_path_rewrites_reach_the_backend(client: Client, url: str, raw_path: str) -> None:
    assert echoed(client.get(url))["raw_path"] == raw_path


def test_redirect_scheme_and_redirect_regex_answer_locally(client: Client) -> None:
    host = client.authority.rsplit(":", 1)[0]
    r = client.get("/https/a?b=1")
    if client.scheme == "https":                  # already on https: nothing to redirect
        assert routed_to(r) == (200, "a")
    else:
        assert (r.status_code, r.headers["location"]) == (302, f"https://{host}:8443/https/a?b=1")
    r = client.get("/old/page?x=1")
    assert (r.status_code, r.headers["location"]) == (302, f"{client.scheme}://{client.authority}/new/page?x=1")


def test_basic_auth_passes_the_user_and_challenges_without_credentials(client: Client) -> None:
    seen = echoed(client.get("/basic", auth=("admin", "plain-pw"), headers={"X-Auth-User": "root"}))
    assert seen["headers"]["x-auth-user"] == ["admin"] and "authorization" not in seen["headers"]
    assert_error(client.get("/basic"), 401, {"error": "Missing Authorization header"},
                 www_authenticate='Basic realm="staff"')
    assert_error(client.get("/basic", auth=("admin", "wrong")), 401, {"error": "Invalid credentials"},
                 www_authenticate='Basic realm="staff"')


def test_api_key_is_checked_and_removed_before_forwarding(client: Client) -> None:
    assert "x-api-key" not in echoed(client.get("/key", headers={"X-API-Key": "k-one"}))["headers"]
    assert_error(client.get("/key", headers={"X-API-Key": "k-two"}), 401, {"error": "Invalid or missing API key"})


def test_jwt_valid_token_passes_its_claims_and_a_missing_one_is_401(client: Client) -> None:
    token = jwt.encode({"sub": "user-1", "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")
    seen = echoed(client.get("/jwt", headers={"Authorization": f"Bearer {token}"}))
    assert seen["headers"]["x-jwt-subject"] == ["user-1"]
    r = client.get("/jwt")
    assert (r.status_code, r.json()) == (401, {"error": "Missing token"})


def test_ip_allow_admits_loopback_and_refuses_other_networks(client: Client) -> None:
    echoed(client.get("/allow"))
    assert_error(client.get("/ten"), 403, {"error": "Forbidden"})


def test_cors_preflight_is_answered_and_simple_requests_get_the_origin(client: Client) -> None:
    r = client.request("OPTIONS", "/cors/x", headers={"Origin": "https://a.example",
                                                      "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 204 and r.content == b"" and "x-backend" not in r.headers
    assert {k: v for k, v in r.headers.items() if k.startswith(("access-control", "vary"))} == {
        "access-control-allow-origin": "https://a.example", "vary": "Origin",
        "access-control-allow-methods": "GET, PUT", "access-control-allow-headers": "X-Custom",
        "access-control-max-age": "600"}
    r = client.get("/cors/x", headers={"Origin": "https://a.example"})
    assert routed_to(r) == (200, "a") and r.headers["access-control-allow-origin"] == "https://a.example"
    assert_error(client.request("OPTIONS", "/cors/x", headers={"Origin": "https://evil.example",
                                                               "Access-Control-Request-Method": "GET"}),
                 403, {"error": "Origin not allowed"})


def test_compress_gzips_a_large_json_body(client: Client) -> None:
    path = "/gz/x?" + "q" * 3000
    with client.http.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
        assert r.http_version == client.version
        assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
        assert "content-length" not in r.headers
    assert httpx.Response(200, content=gzip.decompress(raw)).json()["query"] == "q" * 3000
    r = client.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers and r.json()["query"] == "q" * 3000


def test_body_limit_passes_up_to_the_limit_and_answers_413_above(client: Client) -> None:
    assert echoed(client.post("/limit", content=b"x" * 1000))["body_len"] == 1000
    assert echoed(client.post("/limit", content=iter([b"a" * 500, b"b" * 500])))["body_len"] == 1000
    assert_error(client.post("/limit", content=b"x" * 1001), 413,
                 {"error": "Request body too large", "max_bytes": 1000})


def test_body_limit_streamed_body_over_the_limit_is_413(client: Client) -> None:
    """No Content-Length (chunked over HTTP/1.1, DATA frames over HTTP/2): the limit is found on the stream."""
    r = client.post("/limit", content=iter([b"a" * 600, b"b" * 600]), fresh=True)
    assert_error(r, 413, {"error": "Request body too large", "max_bytes": 1000})


def test_rate_limit_keyed_by_header_answers_429_past_the_rate(client: Client) -> None:
    tenant = {"X-Tenant": f"rate-{client.proto}"}
    assert [client.get("/rate", headers=tenant, fresh=True).status_code for _ in range(3)] == [200, 200, 429]
    r = client.get("/rate", headers=tenant)
    assert_error(r, 429, {"error": "Rate limit exceeded"})
    assert 1000 <= int(r.headers["retry-after"]) <= 1800


def test_circuit_breaker_opens_after_failures_for_every_worker(client: Client) -> None:
    base = f"/cb-{client.proto}"
    assert [client.get(f"{base}/status/500", fresh=True).status_code for _ in range(3)] == [500] * 3
    for _ in range(4):
        assert_error(client.get(f"{base}/x", fresh=True), 503,
                     {"error": "Service unavailable (circuit breaker open)"})
