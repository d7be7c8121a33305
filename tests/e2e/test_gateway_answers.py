"""Responses the gateway writes itself, through the real binary, over HTTP/1.1 and h2c: their body bytes are
logged, an ``@internal`` service's answer gets the router's response phase, HTTP/1.x is served as HTTP/1.1 and
other major versions get a 505, and ``--log-level debug`` says why each request went where it went."""

from __future__ import annotations

import socket

import httpx
import pytest
from harness import free_port, wait_until
from obs_util import json_lines

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.who]
rule = "PathPrefix(`/who`)"
service = "whoami@internal"
middlewares = ["cors"]
[routers.api]
rule = "PathPrefix(`/api`)"
service = "svc"
[routers.dead]
rule = "PathPrefix(`/dead`)"
service = "gone"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
[services.gone.load_balancer]
servers = [{url = "http://127.0.0.1:DEADPORT"}]
[middlewares.cors]
type = "cors"
allowed_origins = ["https://x.com"]
"""


def _config(backend_url: str, extra: str = "") -> str:
    return CONFIG.replace("BACKEND", backend_url).replace("DEADPORT", str(free_port())) + extra


def _client(protocol: str) -> httpx.Client:
    return httpx.Client(http1=protocol == "http1", http2=protocol == "h2c", timeout=5)


@pytest.mark.parametrize("protocol", ["http1", "h2c"])
def test_gateway_answers_are_logged_with_their_body_bytes(gateway, backends, tmp_path, protocol):
    log = tmp_path / "access.log"
    g = gateway(_config(backends().url, f'\n[access_log]\nenabled = true\npath = "{log}"\n'
                                        'flush_interval = "20ms"\n'))
    with _client(protocol) as c:
        missing = c.get(g.url + "/nowhere")
        dead = c.get(g.url + "/dead")
    assert (missing.status_code, dead.status_code) == (404, 502)
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= 2 else None)(json_lines(log)), 10, what="2 lines")
    by_status = {line["status"]: line for line in lines}
    assert by_status[404]["response_bytes"] == len(missing.content) == 28
    assert by_status[502]["response_bytes"] == len(dead.content) > 0


@pytest.mark.parametrize("protocol", ["http1", "h2c"])
def test_an_internal_service_answer_gets_the_response_phase(gateway, backends, tmp_path, protocol):
    g = gateway(_config(backends().url))
    with _client(protocol) as c:
        r = c.get(g.url + "/who", headers={"Origin": "https://x.com"})
    assert r.status_code == 200 and r.json()["path"] == "/who"
    assert r.headers["access-control-allow-origin"] == "https://x.com"


def _raw_get(port: int, version: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /api/v HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".replace(b"HTTP/1.1", version))
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def test_an_http_1_x_minor_version_is_served_as_http_1_1(gateway, backends):
    g = gateway(_config(backends().url))
    reply = _raw_get(g.port, b"HTTP/1.2")
    assert reply.startswith(b"HTTP/1.1 200 ") and b"Transfer-Encoding: chunked" not in reply.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize("version", [b"HTTP/3.1", b"HTTP/0.9", b"HTTP/2.0"])
def test_another_major_http_version_is_answered_505(gateway, backends, version):
    g = gateway(_config(backends().url))
    reply = _raw_get(g.port, version)
    assert reply.startswith(b"HTTP/1.1 505 ")
    assert b'{"error":"HTTP version not supported"}' in reply


def test_debug_log_says_which_router_and_backend_and_why(gateway, backends):
    backend = backends()
    g = gateway(_config(backend.url), workers=1, extra_args=["--log-level", "debug"])
    assert httpx.get(g.url + "/api/x", timeout=5).status_code == 200
    assert httpx.get(g.url + "/nowhere", timeout=5).status_code == 404
    assert httpx.get(g.url + "/dead", timeout=5).status_code == 502
    wait_until(lambda: "GET 127.0.0.1" in g.logs() and "Bad gateway" in g.logs(), 10, what="debug lines")
    logs = g.logs()
    assert "router 'api'" in logs and f"backend {backend.url}" in logs and "(balancer)" in logs
    assert "no router of entrypoint 'web' matched" in logs
    assert "Bad gateway: cannot connect to backend" in logs and "answered 502" in logs
