"""Protocol corners where the gateway now behaves as RFC 9112/9113 (and nginx) say, through the real binary:
a bad content-length on one HTTP/2 stream resets that stream only, an HTTP/2 request whose body ends empty reaches
an HTTP/1.1 backend without a body, an absolute-form target's authority replaces Host, an early error is followed
by a lingering close (the client reads it whole), a refused framing says why, and ``Expect: 100-continue`` is
answered by the gateway once the request phase let the request through."""

from __future__ import annotations

import socket

import h2.connection
import h2.errors
import h2.events
import pytest
from h2_client import client_connection, converse
from recording_backend import RawClient, RecordingBackend

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.other]
rule = "Host(`other.example`)"
service = "other"
[routers.guarded]
rule = "PathPrefix(`/guarded`)"
service = "rec"
middlewares = ["auth"]
[middlewares.auth]
type = "basic-auth"
users = ["u:{SHA}UWuXg/ylF+7L0dBk2i0WUxCxl1k="]
[routers.all]
rule = "PathPrefix(`/`)"
service = "rec"
[services.rec.load_balancer]
servers = [{url = "REC"}]
[services.other.load_balancer]
servers = [{url = "OTHER"}]
"""


@pytest.fixture
def recorded(gateway):
    rec, other = RecordingBackend(), RecordingBackend()
    g = gateway(CONFIG.replace("REC", rec.url).replace("OTHER", other.url))
    yield g, rec, other
    rec.stop()
    other.stop()


def _headers(path: str, method: str = "POST", extra: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":authority", "a"), (":path", path), *extra]


def test_a_content_length_the_data_does_not_match_resets_only_that_stream(recorded):
    g, _rec, _other = recorded
    conn = client_connection()
    conn.send_headers(1, _headers("/short", extra=(("content-length", "10"),)))
    conn.send_data(1, b"abc", end_stream=True)      # 3 bytes of 10
    conn.send_headers(3, _headers("/fine", method="GET"), end_stream=True)
    seen: dict[int, object] = {}

    def handle(event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.StreamReset):
            seen[event.stream_id] = event.error_code
        elif isinstance(event, h2.events.ResponseReceived):
            seen[event.stream_id] = dict(event.headers)[":status"]
        elif isinstance(event, h2.events.ConnectionTerminated):
            seen[0] = event.error_code
        return 1 in seen and 3 in seen

    converse(g.port, conn, handle)
    assert seen[1] == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert seen[3] == "200" and 0 not in seen


def test_more_data_than_the_content_length_resets_only_that_stream(recorded):
    g, rec, _other = recorded
    conn = client_connection()
    conn.send_headers(1, _headers("/long", extra=(("content-length", "2"),)))
    conn.send_data(1, b"abcdef", end_stream=True)
    conn.send_headers(3, _headers("/after", method="GET"), end_stream=True)
    seen: dict[int, object] = {}

    def handle(event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.StreamReset):
            seen[event.stream_id] = event.error_code
        elif isinstance(event, h2.events.ResponseReceived):
            seen[event.stream_id] = dict(event.headers)[":status"]
        return 1 in seen and 3 in seen

    converse(g.port, conn, handle)
    assert seen == {1: h2.errors.ErrorCodes.PROTOCOL_ERROR, 3: "200"}
    assert "/long" not in [target for _m, target, _h, _b in rec.requests()]


def test_an_http2_body_that_ends_empty_reaches_an_http1_backend_without_a_body(recorded):
    g, rec, _other = recorded
    conn = client_connection()
    conn.send_headers(1, _headers("/empty"))
    conn.send_data(1, b"", end_stream=True)
    statuses: dict[int, str] = {}

    def handle(event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.ResponseReceived):
            statuses[event.stream_id] = dict(event.headers)[":status"]
        return isinstance(event, h2.events.StreamEnded)

    converse(g.port, conn, handle)
    assert statuses == {1: "200"}
    ((method, target, fields, body),) = rec.requests()
    names = {name.lower(): value for name, value in fields}
    assert (method, target, body) == ("POST", "/empty", b"")
    assert b"transfer-encoding" not in names and names[b"content-length"] == b"0"
    assert b"0\r\n\r\n" not in rec.raw()


def test_an_absolute_form_target_authority_replaces_host(recorded):
    g, rec, other = recorded
    client = RawClient(g.port)
    client.send(b"GET http://other.example/x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    status, _headers_, body = client.read_response()
    assert (status, body) == (200, b"ok")
    assert rec.requests() == []
    ((_method, target, fields, _body),) = other.requests()
    assert target == "/x?y=1"
    assert dict((n.lower(), v) for n, v in fields)[b"host"] == b"other.example"


def test_an_early_431_is_read_whole_while_the_client_is_still_sending(recorded):
    g, _rec, _other = recorded
    with socket.create_connection(("127.0.0.1", g.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        filler = b"X-Filler: " + b"f" * 1000 + b"\r\n"
        sent_all = True
        try:
            for _ in range(200):                # ~200 KB of headers, far past the 32 KiB limit
                s.sendall(filler)
        except OSError:
            sent_all = False                    # only a reset would stop us here
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert sent_all
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_a_refused_framing_says_why(recorded):
    g, _rec, _other = recorded
    client = RawClient(g.port)
    client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc")
    status, _headers_, body = client.read_response()
    assert status == 400
    assert b"Duplicate Content-Length" in body or b"content-length" in body.lower()


def test_expect_100_continue_is_answered_once_the_request_phase_passed(recorded):
    g, rec, _other = recorded
    client = RawClient(g.port)
    client.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    while b"\r\n\r\n" not in client.buf:       # the interim answer comes before any body byte was sent
        assert client._fill(), "the gateway closed the connection"
    assert client.buf.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    client.send(b"hello")
    status, _headers_, body = client.read_response()
    assert (status, body) == (200, b"ok")
    ((_method, target, fields, sent),) = rec.requests()
    assert (target, sent) == ("/up", b"hello")
    assert b"expect" not in {name.lower() for name, _ in fields}


def test_expect_100_continue_refused_by_a_middleware_gets_the_final_status_at_once(recorded):
    g, rec, _other = recorded
    client = RawClient(g.port)
    client.send(b"POST /guarded HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    status, headers, _body = client.read_response()
    assert status == 401 and headers[b"connection"] == b"close"
    assert not client.buf.startswith(b"HTTP/1.1 100")
    assert client.closed()
    assert rec.requests() == []
