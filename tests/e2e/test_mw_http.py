"""Request/response middlewares through the real binary: headers, cors, the path-rewrite family, redirects,
ip-allow/ip-block (with trusted proxies), body-limit (Content-Length and chunked), compress, retry."""

from __future__ import annotations

import gzip
import socket
import zlib
from collections.abc import Iterator

import brotli
import httpx
import pytest
from harness import Backend, Gateway, free_port
from mw_support import assert_error, echoed

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "%(app)s"}]
[services.flaky.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}, {url = "%(retried)s"}]
[services.counted.load_balancer]
servers = [{url = "%(retried)s"}]

[middlewares.hdr]
type = "headers"
request_headers = {X-Set = "set", X-Drop-Me = ""}
add_request_headers = {X-Multi = "added"}
remove_request_headers = ["X-Remove"]
response_headers = {X-Resp = "r", Server = ""}
add_response_headers = {X-Backend = "also"}
remove_response_headers = ["Content-Language"]
[middlewares.cors]
type = "cors"
allowed_origins = ["https://a.example", "https://b.example"]
allowed_methods = ["GET", "PUT"]
allowed_headers = ["X-Custom"]
max_age = 600
[middlewares.cors-cred]
type = "cors"
allow_credentials = true
expose_headers = ["X-Backend"]
[middlewares.strip]
type = "strip-prefix"
prefixes = ["/nomatch", "/api"]
[middlewares.strip-re]
type = "strip-prefix-regex"
regex = ["/v[0-9]+"]
[middlewares.add]
type = "add-prefix"
prefix = "/base"
[middlewares.replace]
type = "replace-path"
path = "/fixed"
[middlewares.to-https]
type = "redirect-scheme"
port = 8443
[middlewares.to-https-permanent]
type = "redirect-scheme"
permanent = true
[middlewares.moved]
type = "redirect-regex"
regex = "^http://([^/]+)/old/(.*)$"
replacement = "http://$1/new/$${2}"
[middlewares.allow-local]
type = "ip-allow"
allowed_ips = ["127.0.0.1", "::1"]
[middlewares.allow-ten]
type = "ip-allow"
allowed_ips = ["10.0.0.0/8"]
[middlewares.allow-via-proxy]
type = "ip-allow"
allowed_ips = ["203.0.113.0/24"]
trusted_proxies = ["127.0.0.0/8", "192.0.2.1"]
[middlewares.block-local]
type = "ip-block"
blocked_ips = ["127.0.0.0/8"]
[middlewares.limit]
type = "body-limit"
max_body_bytes = 1000
[middlewares.gz]
type = "compress"
[middlewares.unprefix]
type = "strip-prefix"
prefixes = ["/gztext", "/gz", "/sse", "/notransform"]
[middlewares.as-text]
type = "headers"
response_headers = {Content-Type = "text/plain"}
[middlewares.as-sse]
type = "headers"
response_headers = {Content-Type = "text/event-stream"}
[middlewares.no-transform]
type = "headers"
response_headers = {Cache-Control = "no-transform"}
[middlewares.retry]
type = "retry"
max_retries = 2
retry_interval_ms = 10
backoff = "exponential"
"""
ROUTES = {
    "hdr": ["hdr"], "cors": ["cors"], "cred": ["cors-cred"], "api": ["strip"], "v": ["strip-re"],
    "add": ["add"], "replace": ["replace"], "https": ["to-https"], "https301": ["to-https-permanent"],
    "old": ["moved"], "allow": ["allow-local"], "ten": ["allow-ten"], "proxied": ["allow-via-proxy"],
    "block": ["block-local"], "limit": ["limit"], "gz": ["gz", "unprefix"],
    "gztext": ["gz", "as-text", "unprefix"], "sse": ["gz", "as-sse", "unprefix"],
    "notransform": ["gz", "as-text", "no-transform", "unprefix"],
}
CONFIG += "".join(f"""
[routers.{name}]
rule = "PathPrefix(`/{name}`)"
service = "app"
middlewares = {mws!r}
""".replace("'", '"') for name, mws in ROUTES.items())
CONFIG += """
[routers.retry]
rule = "PathPrefix(`/retry`)"
service = "flaky"
middlewares = ["retry"]
[routers.noretry]
rule = "PathPrefix(`/noretry`)"
service = "flaky"
[routers.retry-status]
rule = "PathPrefix(`/status`)"
service = "counted"
middlewares = ["retry"]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Backend]]:
    app, retried = Backend("app"), Backend("retried")
    g = Gateway(CONFIG % {"app": app.url, "retried": retried.url, "dead": free_port()},
                tmp_path_factory.mktemp("http"))
    yield g, retried
    g.stop()
    app.stop()
    retried.stop()


@pytest.fixture(scope="module")
def client(env: tuple[Gateway, Backend]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=env[0].url, timeout=10) as c:
        yield c


# ------------------------------------------------------------------------------------------------ headers

def test_headers_set_add_remove_on_request_and_response(client: httpx.Client) -> None:
    r = client.get("/hdr", headers={"X-Set": "client", "X-Drop-Me": "x", "X-Multi": "client", "X-Remove": "x"})
    seen = echoed(r)["headers"]
    assert seen["x-set"] == ["set"]
    assert seen["x-multi"] == ["client", "added"]
    assert "x-drop-me" not in seen and "x-remove" not in seen
    assert r.headers["x-resp"] == "r"
    assert r.headers.get_list("x-backend") == ["app", "also"]
    assert "server" not in r.headers


# --------------------------------------------------------------------------------------------------- cors

def test_cors_preflight_allowed_origin_is_answered_by_the_gateway(client: httpx.Client) -> None:
    r = client.options("/cors/x", headers={"Origin": "https://b.example", "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 204 and r.content == b""
    assert {k: v for k, v in r.headers.items() if k.startswith(("access-control", "vary"))} == {
        "access-control-allow-origin": "https://b.example", "vary": "Origin",
        "access-control-allow-methods": "GET, PUT", "access-control-allow-headers": "X-Custom",
        "access-control-max-age": "600"}
    assert "x-backend" not in r.headers


def test_cors_preflight_from_disallowed_origin_gets_403(client: httpx.Client) -> None:
    r = client.options("/cors/x", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert_error(r, 403, {"error": "Origin not allowed"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_simple_request_gets_echoed_origin_only_when_allowed(client: httpx.Client) -> None:
    r = client.get("/cors/x", headers={"Origin": "https://a.example"})
    assert (r.headers["access-control-allow-origin"], r.headers["vary"]) == ("https://a.example", "Origin")
    assert "access-control-allow-origin" not in client.get("/cors/x", headers={"Origin": "https://c.example"}).headers
    assert "access-control-allow-origin" not in client.get("/cors/x").headers


def test_cors_with_credentials_echoes_origin_never_star(client: httpx.Client) -> None:
    r = client.get("/cred", headers={"Origin": "https://any.example"})
    assert r.headers["access-control-allow-origin"] == "https://any.example"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "X-Backend"


# --------------------------------------------------------------------------------------- path rewriting

@pytest.mark.parametrize("url,path,query,prefix", [
    ("/api/users?x=1", "/users", "x=1", "/api"), ("/api", "/", "", "/api"), ("/apiv2/x", "/v2/x", "", "/api"),
    ("/v12/items", "/items", "", "/v12")])
def test_strip_prefix_and_regex(client: httpx.Client, url: str, path: str, query: str, prefix: str) -> None:
    seen = echoed(client.get(url, headers={"X-Forwarded-Prefix": "/spoof"}))
    assert (seen["path"], seen["query"], seen["headers"]["x-forwarded-prefix"]) == (path, query, [prefix])


def test_add_prefix_and_replace_path(client: httpx.Client) -> None:
    assert echoed(client.get("/add/x?q=1"))["raw_path"] == "/base/add/x?q=1"
    seen = echoed(client.get("/replace/me?q=2"))
    assert (seen["raw_path"], seen["headers"]["x-replaced-path"]) == ("/fixed?q=2", ["/replace/me"])


@pytest.mark.parametrize("method,url,status,location", [
    ("GET", "/https/a?b=1", 302, "https://{host}:8443/https/a?b=1"),
    ("POST", "/https/a", 307, "https://{host}:8443/https/a"),
    ("GET", "/https301/a", 301, "https://{host}/https301/a"),
    ("PUT", "/https301/a", 308, "https://{host}/https301/a"),
    ("GET", "/old/page?x=1", 302, "http://{host}:{port}/new/page?x=1")])
def test_redirects(env: tuple[Gateway, Backend], client: httpx.Client, method: str, url: str, status: int,
                   location: str) -> None:
    r = client.request(method, url)
    assert (r.status_code, r.headers["location"]) == (status, location.format(host="127.0.0.1",
                                                                               port=env[0].port))


# ------------------------------------------------------------------------------------------- ip filters

@pytest.mark.parametrize("url,xff,status", [
    ("/allow", None, 200), ("/ten", None, 403), ("/block", None, 403),
    ("/proxied", "203.0.113.7", 200), ("/proxied", "198.51.100.1", 403),
    ("/proxied", "203.0.113.7, 192.0.2.1", 200),      # a trusted proxy hop is skipped
    ("/proxied", "203.0.113.7, 198.51.100.1", 403),   # the rightmost untrusted hop decides
    ("/proxied", "not-an-ip", 403)])
def test_ip_filters(client: httpx.Client, url: str, xff: str | None, status: int) -> None:
    r = client.get(url, headers={"X-Forwarded-For": xff} if xff else {})
    if status == 403:
        assert_error(r, 403, {"error": "Forbidden"})
    else:
        echoed(r)


# ------------------------------------------------------------------------------------------- body-limit

def test_body_limit_content_length(client: httpx.Client) -> None:
    assert echoed(client.post("/limit", content=b"x" * 1000))["body_len"] == 1000
    assert_error(client.post("/limit", content=b"x" * 1001), 413,
                 {"error": "Request body too large", "max_bytes": 1000})
    assert "x-gateway-body-limit" not in echoed(client.get("/limit"))["headers"]


def test_body_limit_chunked_under_limit_passes(client: httpx.Client) -> None:
    seen = echoed(client.post("/limit", content=iter([b"a" * 500, b"b" * 500])))
    assert seen["body_len"] == 1000 and "transfer-encoding" in seen["headers"]


def test_body_limit_chunked_over_limit_gets_413_and_close(env: tuple[Gateway, Backend]) -> None:
    with socket.create_connection(("127.0.0.1", env[0].port), timeout=5) as s:
        s.sendall(b"POST /limit HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"258\r\n" + b"a" * 600 + b"\r\n258\r\n" + b"b" * 600 + b"\r\n0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in head
    assert body == b'{"error":"Request body too large","max_bytes":1000}'


# --------------------------------------------------------------------------------------------- compress

BIG = "/gz/x?" + "q" * 3000   # the echo is JSON > 1 KiB


@pytest.mark.parametrize("accept,coding,decode", [
    ("gzip, deflate, br", "br", brotli.decompress), ("gzip;q=1, br;q=0.5", "gzip", gzip.decompress),
    ("deflate", "deflate", zlib.decompress), ("br;q=0, *", "gzip", gzip.decompress)])
def test_compress_negotiates_and_client_decodes(client: httpx.Client, accept: str, coding: str,
                                                decode: object) -> None:
    r = client.get(BIG, headers={"Accept-Encoding": accept})
    assert r.headers["content-encoding"] == coding and r.headers["vary"] == "Accept-Encoding"
    assert "content-length" not in r.headers
    assert r.json()["query"] == "q" * 3000          # httpx decoded it
    with client.stream("GET", BIG, headers={"Accept-Encoding": accept}) as raw:
        assert decode(b"".join(raw.iter_raw())) == r.content  # type: ignore[operator]


@pytest.mark.parametrize("url,accept", [("/gz/small", "gzip"), (BIG, "identity"), (BIG, "gzip;q=0, br;q=0"),
                                        ("/sse/" + "q" * 3000, "gzip"), ("/notransform/" + "q" * 3000, "gzip"),
                                        ("/gz/download/5000", "gzip")])
def test_compress_skips(client: httpx.Client, url: str, accept: str) -> None:
    r = client.get(url, headers={"Accept-Encoding": accept})
    assert r.status_code == 200 and "content-encoding" not in r.headers and "content-length" in r.headers


def test_compress_streams_chunked_bodies(client: httpx.Client) -> None:
    r = client.get("/gztext/chunked/300000", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.content == b"x" * 300000


# ------------------------------------------------------------------------------------------------ retry

def test_retry_moves_connection_failures_to_another_backend(client: httpx.Client) -> None:
    statuses = {client.get("/retry/x").status_code for _ in range(6)}
    assert statuses == {200}
    seen = echoed(client.post("/retry/upload", content=b"payload" * 100))
    assert seen["body_len"] == 700


def test_retry_on_status_only_for_idempotent_methods(env: tuple[Gateway, Backend], client: httpx.Client) -> None:
    def count() -> int:
        return httpx.get(f"{env[1].url}/stats").json()["requests"]

    before = count()
    assert client.get("/status/503").status_code == 503
    assert count() - before == 3               # 1 try + 2 retries
    before = count()
    assert client.post("/status/503").status_code == 503
    assert count() - before == 1
