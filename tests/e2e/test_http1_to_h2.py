"""HTTP/1.1 clients to HTTP/2 backends through the real binary with 2 workers, in front of hypercorn: an
``h2c://`` server and an ``https://`` server of a service with ``http_version = "2"`` (ALPN h2) both get the
request as HTTP/2 (a chunked request body arriving raw), and the response comes back in HTTP/1.1 framing: with
its content-length, or chunk-framed with the backend's trailers in the last chunk when it has no length. A dead
HTTP/2 backend is a 502 with a JSON body."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from certs import CA
from harness import free_port
from proto_backends import HypercornH2

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.tls]
rule = "PathPrefix(`/tls`)"
service = "tls"
[routers.dead]
rule = "PathPrefix(`/dead`)"
service = "dead"
[routers.h2c]
rule = "PathPrefix(`/`)"
service = "h2c"
[services.h2c.load_balancer]
servers = [{url = "H2C"}]
[services.tls.load_balancer]
servers = [{url = "TLS"}]
http_version = "2"
tls = {ca_file = "CAFILE"}
[services.dead.load_balancer]
servers = [{url = "h2c://127.0.0.1:DEAD"}]
"""


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HypercornH2, HypercornH2, CA]]:
    ca = CA(tmp_path_factory.mktemp("pki"))
    pair = ca.issue("127.0.0.1", "localhost", file="h2")
    h2c, tls = HypercornH2(), HypercornH2(str(pair.cert), str(pair.key))
    yield h2c, tls, ca
    h2c.stop()
    tls.stop()


@pytest.fixture
def gw(gateway, backends):
    h2c, tls, ca = backends
    tls_url = tls.url.replace("127.0.0.1", "localhost")
    return gateway(CONFIG.replace("H2C", h2c.url).replace("TLS", tls_url).replace("CAFILE", str(ca.path))
                   .replace("DEAD", str(free_port())))


def test_an_http1_client_reaches_an_h2c_backend_over_http2(gw) -> None:
    with httpx.Client(base_url=gw.url) as client:
        for _ in range(3):                     # keep-alive: every request of the connection goes the same way
            r = client.get("/info?x=1", headers={"X-Custom": "yes"})
            assert r.status_code == 200 and r.http_version == "HTTP/1.1"
            info = r.json()
            assert info["http_version"] == "2" and info["method"] == "GET" and info["path"] == "/info"
            assert info["headers"]["x-custom"] == "yes" and info["headers"]["x-forwarded-for"] == "127.0.0.1"
            assert r.headers["content-length"] == str(len(r.content))


def test_a_chunked_request_body_reaches_an_h2c_backend_raw(gw) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"hello "
        yield b"x" * 70000
        yield b" end"

    r = httpx.post(f"{gw.url}/info", content=pieces())
    assert r.status_code == 200
    info = r.json()
    assert info["body_len"] == 6 + 70000 + 4 and info["body_head"] == "hello " + "x" * 14
    r = httpx.post(f"{gw.url}/info", content=b"abc")      # with a content-length
    assert r.json()["body_len"] == 3 and r.json()["headers"]["content-length"] == "3"


def test_a_response_without_length_is_chunked_with_the_trailers_in_the_last_chunk(gw) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(b"GET /stream/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):       # the gateway closes after the response (Connection: close)
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert b"content-length" not in head.lower()
    assert b"piece 0\n" in body and b"piece 2\n" in body
    assert body.endswith(b"\r\n0\r\nx-checksum: 3\r\n\r\n")


def test_an_http1_client_reaches_an_https_backend_over_http2_when_the_service_says_so(gw) -> None:
    r = httpx.post(f"{gw.url}/tls/info", content=b"over tls")
    assert r.status_code == 200
    info = r.json()
    assert info["http_version"] == "2" and info["body_len"] == 8


def test_a_dead_http2_backend_is_a_502_with_a_json_body(gw) -> None:
    r = httpx.get(f"{gw.url}/dead/x")
    assert r.status_code == 502 and r.json()["error"].startswith("Bad gateway: cannot connect to backend")
