"""Request-body limits on HTTP/2 streams, through the real binary with 2 workers: ``[limits] max_body_bytes`` and
the ``body-limit`` middleware answer 413 JSON for a declared length at once (the backend never sees the request)
and for a body without a declared length as it streams, as they do over HTTP/1.1; bodies within the limits reach
the backend whole. A stream whose body stalls for ``body_timeout`` is answered 408; its connection goes on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import h2.events
import httpx
import pytest
from h2_client import client_connection, converse
from harness import Backend, Gateway

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[limits]
max_body_bytes = 100000
body_timeout = "1s"
[middlewares.small]
type = "body-limit"
max_body_bytes = 5000
[routers.small]
rule = "PathPrefix(`/small`)"
service = "app"
middlewares = ["small"]
[routers.all]
rule = "PathPrefix(`/`)"
service = "app"
[services.app.load_balancer]
servers = [{url = "BACKEND"}]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Backend]]:
    backend = Backend("h2-limits")
    g = Gateway(CONFIG.replace("BACKEND", backend.url), tmp_path_factory.mktemp("gw"), workers=2)
    yield g, backend
    g.stop()
    backend.stop()


def _stream(size: int) -> Iterator[bytes]:
    """A body without a declared length: httpx sends DATA frames and no content-length."""
    for i in range(0, size, 4096):
        yield b"x" * min(4096, size - i)


def _requests(backend: Backend) -> int:
    return httpx.get(f"{backend.url}/stats").json()["requests"]


@pytest.mark.parametrize("path, size, limit", [
    ("/upload", 150_000, 100_000),       # [limits] max_body_bytes
    ("/small/upload", 8_000, 5_000),     # the body-limit middleware of that router
])
def test_declared_length_over_the_limit_is_413_before_the_backend(
    env: tuple[Gateway, Backend], path: str, size: int, limit: int
) -> None:
    g, backend = env
    before = _requests(backend)
    with httpx.Client(http2=True, http1=False, timeout=10) as c:
        r = c.post(f"{g.url}{path}", content=b"x" * size)
        assert (r.status_code, r.http_version) == (413, "HTTP/2")
        assert r.json()["max_bytes"] == limit
        assert c.get(f"{g.url}/after").status_code == 200          # the connection goes on
    assert _requests(backend) == before + 1                           # only /after


@pytest.mark.parametrize("path, size, limit", [
    ("/upload", 150_000, 100_000),
    ("/small/upload", 8_000, 5_000),
])
def test_streamed_body_over_the_limit_is_413(env: tuple[Gateway, Backend], path: str, size: int, limit: int) -> None:
    g, _ = env
    with httpx.Client(http2=True, http1=False, timeout=10) as c:
        r = c.post(f"{g.url}{path}", content=_stream(size))
        assert (r.status_code, r.http_version) == (413, "HTTP/2")
        assert r.json()["max_bytes"] == limit
        after = c.post(f"{g.url}/upload", content=_stream(1000))       # the connection goes on
        assert (after.status_code, after.json()["body_len"]) == (200, 1000)


@pytest.mark.parametrize("path, size", [("/upload", 90_000), ("/small/upload", 4_000)])
def test_bodies_within_the_limits_reach_the_backend_whole(env: tuple[Gateway, Backend], path: str, size: int) -> None:
    g, _ = env
    with httpx.Client(http2=True, http1=False, timeout=10) as c:
        declared = c.post(f"{g.url}{path}", content=b"y" * size)
        streamed = c.post(f"{g.url}{path}", content=_stream(size))
    assert (declared.status_code, declared.json()["body_len"]) == (200, size)
    assert (streamed.status_code, streamed.json()["body_len"]) == (200, size)


REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "h2.test"), (":path", "/upload")]


def test_stalled_body_is_408_and_the_connection_goes_on(env: tuple[Gateway, Backend]) -> None:
    g, _ = env
    conn = client_connection()
    conn.send_headers(1, REQUEST)
    conn.send_data(1, b"x" * 100)              # and then nothing: no more DATA, no END_STREAM
    status: dict[int, str] = {}

    def handle(event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.ResponseReceived):
            status[event.stream_id] = dict(event.headers)[":status"]
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id == 1:            # the same connection serves the next request
                conn.send_headers(3, REQUEST[:3] + [(":path", "/after")], end_stream=True)
            return event.stream_id == 3
        return False

    sent = time.monotonic()
    converse(g.port, conn, handle)
    assert status == {1: "408", 3: "200"}
    assert time.monotonic() - sent >= 1.0            # not before body_timeout


def test_100_continue_from_an_http11_backend_reaches_the_h2_client(env: tuple[Gateway, Backend]) -> None:
    """An informational HEADERS block (RFC 9113 §8.1); the client sends its body only once it has it."""
    g, _ = env
    conn = client_connection()
    conn.send_headers(1, REQUEST + [("expect", "100-continue"), ("content-length", "5")])
    statuses: list[str] = []
    body = bytearray()

    def handle(event: h2.events.Event) -> bool:
        if isinstance(event, (h2.events.InformationalResponseReceived, h2.events.ResponseReceived)):
            statuses.append(dict(event.headers)[":status"])
            if statuses == ["100"]:
                conn.send_data(1, b"hello", end_stream=True)
        elif isinstance(event, h2.events.DataReceived):
            body.extend(event.data)
            conn.acknowledge_received_data(event.flow_controlled_length, 1)
        return isinstance(event, h2.events.StreamEnded)

    converse(g.port, conn, handle)
    assert statuses == ["100", "200"]
    assert json.loads(body)["body_len"] == 5
