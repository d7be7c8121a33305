"""Responses the gateway writes itself for a routed request (502, 503, 504) go through the response phase of the
router's middlewares, like a backend's response: CORS and response headers are on them, over HTTP/1.1 and
HTTP/2; a middleware's own reply is still decorated only by the middlewares before it."""

from __future__ import annotations

import httpx
import pytest
from harness import free_port, wait_until

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.dead.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}]
[services.slow.load_balancer]
servers = [{url = "%(app)s"}]
[services.slow.load_balancer.timeouts]
response_header = "300ms"
[services.down.load_balancer]
servers = [{url = "%(app)s"}]
[services.down.load_balancer.health_check]
path = "/status/500"
interval = "100ms"

[middlewares.cors]
type = "cors"
allowed_origins = ["https://a.example"]
expose_headers = ["X-Trace"]
[middlewares.hdr]
type = "headers"
response_headers = {X-Gw = "yes"}

[routers.dead]
rule = "PathPrefix(`/dead`)"
service = "dead"
middlewares = ["cors", "hdr"]
[routers.slow]
rule = "PathPrefix(`/delay`)"
service = "slow"
middlewares = ["cors", "hdr"]
[routers.down]
rule = "PathPrefix(`/down`)"
service = "down"
middlewares = ["cors"]
[routers.plain]
rule = "PathPrefix(`/plain`)"
service = "dead"
"""

ORIGIN = {"Origin": "https://a.example"}


@pytest.fixture
def g(gateway, backends):
    return gateway(CONFIG % {"app": backends().url, "dead": free_port()}, workers=1)


def _decorated(r: httpx.Response, status: int) -> None:
    assert r.status_code == status
    assert r.headers["access-control-allow-origin"] == "https://a.example"
    assert r.headers["access-control-expose-headers"] == "X-Trace"
    assert "Origin" in r.headers["vary"]
    assert r.headers["content-type"] == "application/json"
    assert "error" in r.json()


def test_cors_and_response_headers_on_a_502_and_a_504(g):
    r = httpx.get(g.url + "/dead", headers=ORIGIN, timeout=5)
    _decorated(r, 502)
    assert r.headers["x-gw"] == "yes"
    r = httpx.get(g.url + "/delay/2", headers=ORIGIN, timeout=5)
    _decorated(r, 504)
    assert r.headers["x-gw"] == "yes"
    assert r.json()["error"].startswith("Gateway timeout")


def test_keep_alive_and_head_survive_the_response_phase(g):
    with httpx.Client(base_url=g.url, timeout=5) as c:
        for _ in range(3):                       # one connection: the framing stays right
            _decorated(c.get("/dead", headers=ORIGIN), 502)
        r = c.head("/dead", headers=ORIGIN)
        assert r.status_code == 502 and r.content == b""
        assert r.headers["access-control-allow-origin"] == "https://a.example"
        assert int(r.headers["content-length"]) > 0


def test_no_healthy_backend_503_gets_cors(g):
    def down():
        r = httpx.get(g.url + "/down", headers=ORIGIN, timeout=5)
        return [r] if r.status_code == 503 else None

    _decorated(wait_until(down, what="the health check takes the backend out")[0], 503)


def test_unrouted_and_chainless_errors_are_unchanged(g):
    r = httpx.get(g.url + "/plain", headers=ORIGIN, timeout=5)
    assert r.status_code == 502 and "access-control-allow-origin" not in r.headers
    r = httpx.get(g.url + "/nowhere", headers=ORIGIN, timeout=5)
    assert r.status_code == 404 and "access-control-allow-origin" not in r.headers


def test_cors_on_a_502_over_http2(g):
    with httpx.Client(http2=True, http1=False, timeout=5) as c:
        r = c.get(g.url + "/dead", headers=ORIGIN)
        assert r.http_version == "HTTP/2"
        _decorated(r, 502)
        r = c.get(g.url + "/delay/2", headers=ORIGIN)
        _decorated(r, 504)
