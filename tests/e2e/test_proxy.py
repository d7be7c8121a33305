"""HTTP/1.1 proxying through the real binary: headers, framing, streaming with bounded memory, pipelining."""

from __future__ import annotations

import hashlib
import re
import socket

import httpx
import psutil
import pytest
from harness import one_service

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
forwarded_headers = {trusted_ips = ["127.0.0.0/8"]}
[admin]
address = "127.0.0.1:{admin}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "svc"
[routers.rewrite_host]
rule = "PathPrefix(`/own-host`)"
service = "own_host"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
[services.own_host.load_balancer]
pass_host_header = false
servers = [{url = "BACKEND"}]
"""


@pytest.fixture
def proxied(gateway, backends):
    b = backends("echo")
    return gateway(CONFIG.replace("BACKEND", b.url), workers=2)


def test_x_forwarded_headers_are_set_and_spoofing_is_dropped(proxied):
    r = httpx.get(
        proxied.url + "/p?q=1",
        headers={
            "Host": "site.example:8443",
            "X-Forwarded-For": "203.0.113.9",
            "X-Real-IP": "6.6.6.6",
            "X-Forwarded-Proto": "gopher",
            "X-Forwarded-Host": "evil",
            "X-Forwarded-Port": "1",
        },
    )
    h = r.json()["headers"]
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["site.example:8443"]
    assert h["x-forwarded-port"] == [str(proxied.port)]
    assert h["host"] == ["site.example:8443"]  # pass_host_header defaults to true
    assert r.json()["path"] == "/p" and r.json()["query"] == "q=1"


def test_x_forwarded_for_from_an_untrusted_peer_is_replaced(gateway, backends):
    g = gateway(one_service(backends().url))      # no forwarded_headers.trusted_ips: nobody is trusted
    r = httpx.get(g.url + "/", headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "6.6.6.6"})
    h = r.json()["headers"]
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]


def test_pass_host_header_false_sends_the_backend_host(proxied):
    r = httpx.get(proxied.url + "/own-host", headers={"Host": "site.example"})
    assert r.json()["headers"]["host"][0].startswith("127.0.0.1:")


def test_hop_by_hop_headers_are_stripped_both_ways(proxied):
    r = httpx.get(
        proxied.url + "/",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic x",
            "X-Normal": "yes",
        },
    )
    h = r.json()["headers"]
    for name in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in h
    assert h["x-normal"] == ["yes"]
    assert "keep-alive" not in r.headers


def test_chunked_request_and_response(proxied):
    def gen():
        for i in range(50):
            yield bytes([65 + i % 26]) * 1000

    body = b"".join(gen())
    r = httpx.post(proxied.url + "/upload", content=gen())
    assert r.json()["body_len"] == len(body)
    assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    with httpx.stream("GET", proxied.url + "/chunked/300000") as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        assert sum(len(c) for c in r.iter_raw()) == 300000


def _gateway_rss(g) -> int:
    procs = [psutil.Process(g.proc.pid)] + [psutil.Process(p) for p in g.worker_pids()]
    return sum(p.memory_info().rss for p in procs)


@pytest.mark.slow
def test_50mb_each_way_streams_with_bounded_memory(proxied):
    size = 50 * 1024 * 1024
    httpx.get(proxied.url + "/warm")
    before = _gateway_rss(proxied)
    block = b"z" * 65536

    def upload():
        for _ in range(size // len(block)):
            yield block

    r = httpx.post(proxied.url + "/upload", content=upload(), timeout=60)
    assert r.json()["body_len"] == size
    peak_up = _gateway_rss(proxied)
    got = 0
    with httpx.stream("GET", proxied.url + f"/download/{size}", timeout=60) as r:
        assert r.headers["content-length"] == str(size)
        for chunk in r.iter_raw():
            got += len(chunk)
    assert got == size
    peak_down = _gateway_rss(proxied)
    assert max(peak_up, peak_down) - before < 30 * 1024 * 1024


def test_pipelined_requests_are_answered_in_order(proxied):
    reqs = b"".join(b"GET /n%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
    with socket.create_connection(("127.0.0.1", proxied.port), timeout=10) as s:
        s.sendall(reqs + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    paths = re.findall(rb'"path": "([^"]*)"', data)
    assert paths == [b"/n%d" % i for i in range(10)] + [b"/last"]
    assert data.count(b"HTTP/1.1 200") == 11


def test_http10_client_gets_close_delimited_response(proxied):
    with socket.create_connection(("127.0.0.1", proxied.port), timeout=10) as s:
        s.sendall(b"GET /chunked/1000 HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert len(body) == 1000


def test_head_request_gets_headers_only(proxied):
    r = httpx.head(proxied.url + "/download/5000")
    assert r.status_code == 200 and r.headers["content-length"] == "5000" and r.content == b""
    assert httpx.get(proxied.url + "/after-head").status_code == 200


def test_connections_spread_over_all_workers(gateway):
    g = gateway(
        CONFIG.replace("BACKEND", "http://127.0.0.1:9").replace(
            'service = "svc"', 'service = "whoami@internal"', 1
        ),
        workers=3,
    )
    seen = set()
    for _ in range(60):
        seen.add(httpx.get(g.url + "/").json()["worker"]["slot"])
    assert seen == {0, 1, 2}
