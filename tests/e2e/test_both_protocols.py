"""The same requests over HTTP/1.1, h2c (prior knowledge) and HTTP/2 over TLS (ALPN), through the real binary
(two workers) in front of real backends: every rule matcher, each middleware's visible effect, internal services,
gateway-made errors, retries, sticky sessions and body limits must look the same to the client and to the
backend whatever protocol the client speaks. One gateway serves every case and every protocol.

Each test is parametrized by ``proto``; its assertions are fixed values, so a case passing on one protocol and
failing on another is a protocol-dependent bug in the worker (the ACME HTTP-01 answer is in
test_both_protocols_acme.py).
"""

from __future__ import annotations

import gzip
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from certs import CA
from harness import Backend, Gateway, free_port, wait_until
from mw_support import assert_error, echoed

PROTOCOLS = ("http1", "h2c", "h2-tls")
SECRET = "both-protocols-hmac-key-" + "k" * 40
TLS_NAME = "localhost"          # the TLS entrypoint's certificate; resolves to loopback

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.secure]
address = "127.0.0.1:{secure}"
[entrypoints.secure.tls]
cert_file = "%(cert)s"
key_file = "%(key)s"
[admin]
address = "127.0.0.1:{admin}"

[services.a.load_balancer]
servers = [{url = "%(a)s"}]
[services.b.load_balancer]
servers = [{url = "%(b)s"}]
[services.dead.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}]
[services.flaky.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}, {url = "%(counted)s"}]
[services.counted.load_balancer]
servers = [{url = "%(counted)s"}]
[services.slow.load_balancer]
servers = [{url = "%(a)s"}]
[services.slow.load_balancer.timeouts]
response_header = "300ms"
[services.down.load_balancer]
servers = [{url = "%(a)s"}]
[services.down.load_balancer.health_check]
path = "/status/500"
interval = "100ms"
[services.sticky.load_balancer]
servers = [{url = "%(a)s"}, {url = "%(b)s"}]
[services.sticky.load_balancer.sticky]
cookie = "gw_sticky"

# ---------------------------------------------------------------- matchers
[routers.host]
rule = "Host(`api.example.com`)"
service = "a"
[routers.hostregexp]
rule = "HostRegexp(`^[a-z]+\\\\.regex\\\\.test$`)"
service = "b"
[routers.path]
rule = "Path(`/exact`)"
service = "a"
[routers.prefix]
rule = "PathPrefix(`/pre`)"
service = "b"
[routers.pathregexp]
rule = "PathRegexp(`^/items/[0-9]+$`)"
service = "a"
[routers.method]
rule = "Method(`DELETE`) && PathPrefix(`/m`)"
service = "b"
[routers.header]
rule = "Header(`X-Tenant`, `blue`) && PathPrefix(`/h`)"
service = "a"
[routers.headerregexp]
rule = "HeaderRegexp(`X-Version`, `^v[0-9]+$`) && PathPrefix(`/hr`)"
service = "b"
[routers.query]
rule = "Query(`debug`, `1`) && PathPrefix(`/q`)"
service = "b"
[routers.queryregexp]
rule = "QueryRegexp(`id`, `^[0-9]+$`) && PathPrefix(`/qr`)"
service = "a"
[routers.clientip]
rule = "ClientIP(`127.0.0.0/8`) && PathPrefix(`/ip`)"
service = "b"
[routers.clientip_other]
rule = "ClientIP(`10.0.0.0/8`) && PathPrefix(`/net10`)"
service = "a"
[routers.or_not]
rule = "(PathPrefix(`/or1`) || PathPrefix(`/or2`)) && !Method(`POST`)"
service = "a"
[routers.xff]
rule = "Header(`X-Forwarded-For`, `1.2.3.4`) && PathPrefix(`/xff`)"
service = "b"
[routers.whoami]
rule = "PathPrefix(`/whoami`)"
service = "whoami@internal"

# ---------------------------------------------------------------- middlewares
[middlewares.hdr]
type = "headers"
request_headers = {X-Set = "set", X-Drop-Me = ""}
add_request_headers = {X-Multi = "added"}
remove_request_headers = ["X-Remove"]
response_headers = {X-Resp = "r", Server = ""}
add_response_headers = {X-Backend = "also"}
[middlewares.strip]
type = "strip-prefix"
prefixes = ["/strip"]
[middlewares.add]
type = "add-prefix"
prefix = "/base"
[middlewares.replace]
type = "replace-path"
path = "/fixed"
[middlewares.to-https]
type = "redirect-scheme"
port = 8443
[middlewares.moved]
type = "redirect-regex"
regex = "^(https?)://([^/]+)/old/(.*)$"
replacement = "$1://$2/new/$${3}"
[middlewares.basic]
type = "basic-auth"
username = "admin"
password = "plain-pw"
realm = "staff"
header_field = "X-Auth-User"
[middlewares.key]
type = "api-key"
keys = ["k-one"]
[middlewares.jwt]
type = "jwt"
value = "%(secret)s"
claims_to_headers = {sub = "X-JWT-Subject"}
[middlewares.allow-local]
type = "ip-allow"
allowed_ips = ["127.0.0.1", "::1"]
[middlewares.allow-ten]
type = "ip-allow"
allowed_ips = ["10.0.0.0/8"]
[middlewares.cors]
type = "cors"
allowed_origins = ["https://a.example"]
allowed_methods = ["GET", "PUT"]
allowed_headers = ["X-Custom"]
max_age = 600
[middlewares.gz]
type = "compress"
[middlewares.limit]
type = "body-limit"
max_body_bytes = 1000
[middlewares.rate]
type = "rate-limit"
rate = 2
period = "1h"
key = "header:X-Tenant"
[middlewares.retry]
type = "retry"
max_retries = 2
retry_interval_ms = 10
[middlewares.unprefix]
type = "strip-prefix"
prefixes = ["/gz", "/retry", "/rstatus", "/cb-http1", "/cb-h2c", "/cb-h2-tls"]
"""
ROUTES: dict[str, tuple[str, list[str]]] = {
    "hdr": ("a", ["hdr"]), "strip": ("a", ["strip"]), "add": ("a", ["add"]), "replace": ("a", ["replace"]),
    "https": ("a", ["to-https"]), "old": ("a", ["moved"]), "basic": ("a", ["basic"]), "key": ("a", ["key"]),
    "jwt": ("a", ["jwt"]), "allow": ("a", ["allow-local"]), "ten": ("a", ["allow-ten"]), "cors": ("a", ["cors"]),
    "gz": ("a", ["gz", "unprefix"]), "limit": ("a", ["limit"]), "rate": ("a", ["rate"]),
    "retry": ("flaky", ["retry", "unprefix"]), "rstatus": ("counted", ["retry", "unprefix"]),
    "dead": ("dead", []), "delay": ("slow", []), "down": ("down", []), "stick": ("sticky", []),
}
CONFIG += "".join(f"""
[routers.r-{name}]
rule = "PathPrefix(`/{name}`)"
service = "{service}"
middlewares = {mws!r}
""".replace("'", '"') for name, (service, mws) in ROUTES.items())
# one circuit breaker per protocol, so each protocol trips its own
CONFIG += "".join(f"""
[middlewares.cb-{p}]
type = "circuit-breaker"
failure_threshold = 3
cooldown_secs = "1h"
[routers.cb-{p}]
rule = "PathPrefix(`/cb-{p}`)"
service = "a"
middlewares = ["cb-{p}", "unprefix"]
""" for p in PROTOCOLS)


@dataclass
class Env:
    gw: Gateway
    ca: CA
    counted: Backend
    clients: dict[str, httpx.Client]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ca = CA(tmp_path_factory.mktemp("pki"))
    pair = ca.issue(TLS_NAME)
    a, b, counted = Backend("a"), Backend("b"), Backend("counted")
    config = CONFIG % {"cert": pair.cert, "key": pair.key, "a": a.url, "b": b.url, "counted": counted.url,
                       "dead": free_port(), "secret": SECRET}
    g = Gateway(config, tmp_path_factory.mktemp("gw"), workers=2, secure=free_port())
    e = Env(g, ca, counted, {})
    try:
        yield e
    finally:
        for c in e.clients.values():
            c.close()
        g.stop()
        for backend in (a, b, counted):
            backend.stop()


def new_client(env: Env, proto: str) -> httpx.Client:
    """A client speaking ``proto`` to the gateway: HTTP/1.1 or h2c to the plain entrypoint, h2 by ALPN to TLS."""
    if proto == "http1":
        return httpx.Client(base_url=env.gw.url, timeout=10)
    if proto == "h2c":
        return httpx.Client(base_url=env.gw.url, http1=False, http2=True, timeout=10)
    ctx = ssl.create_default_context(cafile=str(env.ca.path))
    return httpx.Client(base_url=f"https://{TLS_NAME}:{env.gw.ports['secure']}", http1=False, http2=True,
                        verify=ctx, timeout=10)


class Client:
    """Requests over one protocol; every response is checked to have come back over that protocol."""

    def __init__(self, env: Env, proto: str) -> None:
        self.env, self.proto = env, proto
        if proto not in env.clients:
            env.clients[proto] = new_client(env, proto)
        self.http = env.clients[proto]
        self.version = "HTTP/1.1" if proto == "http1" else "HTTP/2"
        self.scheme = "https" if proto == "h2-tls" else "http"
        self.authority = self.http.base_url.netloc.decode()

    def request(self, method: str, path: str, fresh: bool = False, **kw: Any) -> httpx.Response:
        """``fresh``: on a new connection (so either worker may take it)."""
        if fresh:
            with new_client(self.env, self.proto) as c:
                r = c.request(method, path, **kw)
        else:
            r = self.http.request(method, path, **kw)
        assert r.http_version == self.version, (self.proto, r.http_version)
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, env: Env) -> Client:
    return Client(env, request.param)


def routed_to(r: httpx.Response) -> tuple[int, str | None]:
    return r.status_code, r.headers.get("x-backend")


# ------------------------------------------------------------------------------------------------ matchers

@pytest.mark.parametrize("host,expected", [("api.example.com", (200, "a")), ("API.Example.com:8080", (200, "a")),
                                           ("abc.regex.test", (200, "b")), ("ab1.regex.test", (404, None))])
def test_host_and_host_regexp_route_by_the_request_authority(client: Client, host: str, expected: tuple) -> None:
    assert routed_to(client.get("/", headers={"Host": host})) == expected


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/exact", (200, "a")), ("GET", "/exact/more", (404, None)),
    ("GET", "/pre", (200, "b")), ("GET", "/prefix/x", (200, "b")),
    ("GET", "/items/42", (200, "a")), ("GET", "/items/abc", (404, None)),
    ("DELETE", "/m", (200, "b")), ("GET", "/m", (404, None)),
    ("GET", "/q?debug=1", (200, "b")), ("GET", "/q?debug=0", (404, None)),
    ("GET", "/qr?id=123", (200, "a")), ("GET", "/qr?id=12a", (404, None)),
    ("GET", "/ip", (200, "b")), ("GET", "/net10", (404, None)),
    ("GET", "/or1", (200, "a")), ("GET", "/or2", (200, "a")), ("POST", "/or1", (404, None)),
])
def test_path_method_query_client_ip_and_combinators_route_alike(client: Client, method: str, path: str,
                                                                 expected: tuple) -> None:
    assert routed_to(client.request(method, path)) == expected


@pytest.mark.parametrize("path,headers,expected", [
    ("/h", {"X-Tenant": "blue"}, (200, "a")), ("/h", {"x-tenant": "blue"}, (200, "a")),
    ("/h", {"X-Tenant": "red"}, (404, None)),
    ("/hr", {"X-Version": "v12"}, (200, "b")), ("/hr", {"X-Version": "12"}, (404, None)),
])
def test_header_and_header_regexp_route_alike(client: Client, path: str, headers: dict, expected: tuple) -> None:
    assert routed_to(client.get(path, headers=headers)) == expected


def test_header_matcher_sees_the_client_x_forwarded_for(client: Client) -> None:
    """Matchers see the client's own header list on every protocol: a rule on X-Forwarded-For matches the
    value the client sent, not the one the gateway forwards (over h2c it matched the rewritten list: 404)."""
    r = client.get("/xff", headers={"X-Forwarded-For": "1.2.3.4"})
    assert routed_to(r) == (200, "b"), r.text
    assert r.json()["headers"]["x-forwarded-for"] == ["127.0.0.1"]     # an untrusted client's value is replaced


def test_no_route_is_404_with_json_body(client: Client) -> None:
    assert_error(client.get("/nothing-here"), 404, {"error": "No route matched"})


# ------------------------------------------------------------------------------ what the backend sees

def test_backend_sees_method_path_query_body_and_headers_alike(client: Client) -> None:
    body = b"0123456789" * 300
    seen = echoed(client.post("/pre/x%20y?a=1&b=2", content=body,
                              headers={"X-Custom": "one", "Content-Type": "application/octet-stream"}))
    assert (seen["method"], seen["raw_path"], seen["query"]) == ("POST", "/pre/x%20y?a=1&b=2", "a=1&b=2")
    assert (seen["body_len"], seen["version"]) == (3000, "1.1")
    h = seen["headers"]
    assert h["x-custom"] == ["one"] and h["content-type"] == ["application/octet-stream"]
    assert h["host"] == [client.authority]
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == [client.scheme]
    assert h["x-forwarded-host"] == [client.authority]
    assert not {"connection", "keep-alive", "upgrade", "http2-settings", "te"} & set(h)


def test_whoami_internal_echoes_the_request(client: Client) -> None:
    r = client.get("/whoami/x?y=1", headers={"X-Who": "me"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    who = r.json()
    assert (who["method"], who["path"], who["client"]["ip"]) == ("GET", "/whoami/x?y=1", "127.0.0.1")
    # header names as received: the client's case over HTTP/1.1, lowercase (as HTTP/2 requires) over HTTP/2
    assert {k.lower(): v for k, v in who["headers"].items()}["x-who"] == ["me"]
    assert who["proto"] == ("HTTP/1.1" if client.proto == "http1" else "HTTP/2.0")


def test_whoami_internal_lists_header_fields_without_http2_pseudo_headers(client: Client) -> None:
    """The echo's ``headers`` are the request's header fields; HTTP/2's :method, :path... are not among them."""
    who = client.get("/whoami").json()
    assert [k for k in who["headers"] if k.startswith(":")] == []


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


# -------------------------------------------------------------------------------------- retries, affinity

def backend_requests(env: Env) -> int:
    return httpx.get(f"{env.counted.url}/stats", timeout=5).json()["requests"]


def test_retry_moves_connection_failures_to_the_live_backend(client: Client) -> None:
    assert {routed_to(client.get("/retry/x")) for _ in range(4)} == {(200, "counted")}
    assert echoed(client.post("/retry/upload", content=b"payload" * 100))["body_len"] == 700


def test_retry_on_5xx_retries_idempotent_requests_only(client: Client) -> None:
    before = backend_requests(client.env)
    assert client.get("/rstatus/status/503").status_code == 503
    assert backend_requests(client.env) - before == 3            # 1 try + 2 retries
    before = backend_requests(client.env)
    assert client.post("/rstatus/status/503").status_code == 503
    assert backend_requests(client.env) - before == 1


def test_sticky_cookie_pins_the_backend_across_connections(client: Client) -> None:
    first = client.get("/stick/x", fresh=True)
    cookie = first.cookies.get("gw_sticky")
    assert first.status_code == 200 and cookie, first.headers
    pinned = first.headers["x-backend"]
    replies = [client.get("/stick/x", fresh=True, headers={"Cookie": f"gw_sticky={cookie}"}) for _ in range(6)]
    assert {r.headers["x-backend"] for r in replies} == {pinned}
    assert all("set-cookie" not in r.headers for r in replies)
    assert {client.get("/stick/x", fresh=True).headers["x-backend"] for _ in range(6)} == {"a", "b"}


# ----------------------------------------------------------------------------------- gateway-made errors

def test_connection_refused_is_502_json(client: Client) -> None:
    r = client.get("/dead/x")
    assert r.status_code == 502 and r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith("Bad gateway: cannot connect to backend")


def test_no_healthy_backend_is_503_json(client: Client) -> None:
    r = wait_until(lambda: (lambda r: r if r.status_code == 503 else None)(client.get("/down/x")),
                   what="the health check takes the backend out")
    assert_error(r, 503, {"error": "No healthy backends"})


def test_response_header_timeout_is_504_json_and_the_connection_stays_usable(client: Client) -> None:
    assert_error(client.get("/delay/1"), 504, {"error": "Gateway timeout: backend did not answer in time"})
    assert routed_to(client.get("/exact")) == (200, "a")
