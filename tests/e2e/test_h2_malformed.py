"""Malformed HTTP/2 requests (RFC 9113 §8.1.1, §8.2, §8.3) sent to the real binary (2 workers, h2c with prior
knowledge) in front of a real HTTP/1.1 backend: each is answered with RST_STREAM(PROTOCOL_ERROR) on its own
stream, the connection goes on (a valid stream after it is answered 200 with the backend's body), and nothing of
it reaches the backend. Valid edge cases (TE: trailers, Host without :authority, empty and inner-space values)
are answered 200.

The ``h2`` client refuses to send malformed fields, so header blocks are encoded here with ``hpack`` and sent as
raw HEADERS frames (``hyperframe``); the responses are read frame by frame the same way. The backend is a strict
HTTP/1.1 parser (``h11``) that keeps every byte it received, so a request that leaked through shows up even when
it is not a well-formed HTTP/1.1 request. Bugs found this way are kept as strict xfails whose reasons name them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import h11
import hpack
import pytest
from harness import Gateway, free_port
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)
from proto_backends import LoopThread

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR = 1
HOST = b"h2.test"

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "svc"
[routers.byhost]
rule = "Host(`abs.test`)"
service = "svc"
[routers.fresh]
rule = "PathPrefix(`/fresh`)"
service = "fresh"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
[services.fresh.load_balancer]
servers = [{url = "FRESH"}]
"""


# -- the backend: strict HTTP/1.1, recording


class _RecorderConnection(asyncio.Protocol):
    def __init__(self, owner: Recorder) -> None:
        self.owner = owner
        self.h = h11.Connection(h11.SERVER)
        self.raw = bytearray()
        self.target = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.owner.raws.append(self.raw)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        self.h.receive_data(data)
        try:
            while True:
                event = self.h.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return
                if isinstance(event, h11.Request):
                    self.target = event.target
                    self.owner.requests.append((event.method, event.target, list(event.headers)))
                elif isinstance(event, h11.EndOfMessage):
                    self.owner.complete.append(self.target)
                    self._answer(b"seen " + self.target)
        except h11.RemoteProtocolError as e:
            self.owner.errors.append(str(e))
            self.transport.close()

    def _answer(self, body: bytes) -> None:
        out = self.h.send(h11.Response(status_code=200, headers=[("Content-Length", str(len(body)))]))
        out += self.h.send(h11.Data(data=body)) + self.h.send(h11.EndOfMessage())  # type: ignore[operator]
        self.transport.write(out)
        self.h.start_next_cycle()


class Recorder(LoopThread):
    """An HTTP/1.1 backend (h11) answering every complete request 200 with body ``seen <target>``. It keeps the
    bytes of every connection (``raws``), every request head (``requests``: method, target, headers), the targets
    of complete requests (``complete``) and what h11 refused (``errors``)."""

    def __init__(self) -> None:
        super().__init__()
        self.raws: list[bytearray] = []
        self.requests: list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]] = []
        self.complete: list[bytes] = []
        self.errors: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.run(self.loop.create_server(lambda: _RecorderConnection(self), "127.0.0.1", self.port))

    def raw(self) -> bytes:
        return b"".join(bytes(r) for r in list(self.raws))


# -- the client: raw frames


class RawH2:
    """One h2c connection driven frame by frame. Header blocks are encoded here and sent as they are written."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.headers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.body: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: int | None = None
        self.eof = False
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def close(self) -> None:
        self.sock.close()

    def headers_frame(self, stream_id: int, fields: list[tuple[bytes, bytes]], end_stream: bool = True) -> bytes:
        frame = HeadersFrame(stream_id)
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        frame.data = self.enc.encode(fields)
        return frame.serialize()

    def data_frame(self, stream_id: int, data: bytes, end_stream: bool = False) -> bytes:
        frame = DataFrame(stream_id, data)
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def wait(self, cond: Callable[[], bool], what: str) -> None:
        """Read frames until ``cond`` holds (a deadline, no sleeping: each read blocks until bytes come)."""
        deadline = time.monotonic() + self.timeout
        while not cond():
            if self.eof:
                raise AssertionError(f"the gateway closed the connection (GOAWAY {self.goaway}) before {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                continue
            self.buf += chunk
            self._frames()

    def finished(self, stream_id: int) -> bool:
        return stream_id in self.ended or stream_id in self.resets

    def _frames(self) -> None:
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            sid = frame.stream_id
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.send(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
            elif isinstance(frame, HeadersFrame):
                self.headers[sid] = [(bytes(n), bytes(v)) for n, v in self.dec.decode(frame.data, raw=True)]
                self.body.setdefault(sid, bytearray())
                if "END_STREAM" in frame.flags:
                    self.ended.add(sid)
            elif isinstance(frame, DataFrame):
                self.body.setdefault(sid, bytearray()).extend(frame.data)
                if "END_STREAM" in frame.flags:
                    self.ended.add(sid)
            elif isinstance(frame, RstStreamFrame):
                self.resets[sid] = frame.error_code
            elif isinstance(frame, GoAwayFrame):
                self.goaway = frame.error_code

    def response(self, stream_id: int) -> tuple[int, bytes]:
        """(status, body) of a stream that ended; the caller waited for it."""
        assert stream_id not in self.resets, f"stream {stream_id} reset with {self.resets[stream_id]}"
        status = dict(self.headers[stream_id])[b":status"]
        return int(status), bytes(self.body[stream_id])

    def expect_reset(self, stream_id: int) -> int:
        self.wait(lambda: self.finished(stream_id), f"stream {stream_id} answered or reset")
        assert stream_id not in self.ended, f"stream {stream_id} answered: {self.headers.get(stream_id)}"
        return self.resets[stream_id]

    def post_with_trailers(self, stream_id: int, path: bytes, trailers: list[tuple[bytes, bytes]]) -> None:
        """A POST of ``body`` ended by a trailers block (which carries END_STREAM)."""
        self.send(self.headers_frame(stream_id, request(path, b"POST"), end_stream=False),
                  self.data_frame(stream_id, b"body"),
                  self.headers_frame(stream_id, trailers))

    def get(self, stream_id: int, path: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
        self.send(self.headers_frame(stream_id, request(path) + (extra or [])))
        self.wait(lambda: self.finished(stream_id), f"the answer on stream {stream_id}")
        return self.response(stream_id)


def request(path: bytes, method: bytes = b"GET", authority: bytes = HOST) -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"http"), (b":authority", authority), (b":path", path)]


# -- the cases: each request's path names it (``/malformed/<case>``), so a leak is found in the backend's bytes

M, S, A = (b":method", b"GET"), (b":scheme", b"http"), (b":authority", HOST)


def _base(case: str) -> list[tuple[bytes, bytes]]:
    return [M, S, A, (b":path", b"/malformed/" + case.encode())]


MALFORMED: dict[str, Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]] = {
    # field names (RFC 9113 §8.2.1)
    "uppercase-name": lambda b: b + [(b"X-Foo", b"1")],
    "space-in-name": lambda b: b + [(b"x foo", b"1")],
    "colon-in-name": lambda b: b + [(b"x:foo", b"1")],
    "empty-name": lambda b: b + [(b"", b"1")],
    "del-in-name": lambda b: b + [(b"x\x7f", b"1")],
    "non-ascii-name": lambda b: b + [(b"x\xe9", b"1")],
    # field values
    "nul-in-value": lambda b: b + [(b"x-v", b"a\x00b")],
    "cr-in-value": lambda b: b + [(b"x-v", b"a\rb")],
    "lf-in-value": lambda b: b + [(b"x-v", b"a\nb")],
    "crlf-injected-header": lambda b: b + [(b"x-v", b"a\r\nx-injected: 1")],
    "leading-space": lambda b: b + [(b"x-v", b" a")],
    "trailing-tab": lambda b: b + [(b"x-v", b"a\t")],
    "control-byte-in-value": lambda b: b + [(b"x-v", b"a\x01b")],     # llhttp refuses it on HTTP/1.1 too
    "del-in-value": lambda b: b + [(b"x-v", b"a\x7fb")],
    # connection-specific fields (§8.2.2)
    "connection": lambda b: b + [(b"connection", b"close")],
    "keep-alive": lambda b: b + [(b"keep-alive", b"timeout=5")],
    "proxy-connection": lambda b: b + [(b"proxy-connection", b"keep-alive")],
    "transfer-encoding": lambda b: b + [(b"transfer-encoding", b"chunked")],
    "upgrade": lambda b: b + [(b"upgrade", b"h2c")],
    "te-gzip": lambda b: b + [(b"te", b"gzip")],
    "te-trailers-and-more": lambda b: b + [(b"te", b"trailers, gzip")],
    # framing-header spellings an HTTP/1.1 backend may merge
    "content_length": lambda b: b + [(b"content_length", b"5")],
    "transfer_encoding": lambda b: b + [(b"transfer_encoding", b"chunked")],
    # pseudo-headers (§8.3)
    "duplicate-method": lambda b: b + [(b":method", b"POST")],
    "duplicate-path": lambda b: b + [(b":path", b"/other")],
    "pseudo-after-regular": lambda b: b[:2] + [(b"x-v", b"1")] + b[2:],
    "unknown-pseudo": lambda b: b + [(b":foo", b"1")],
    "uppercase-pseudo": lambda b: b[1:] + [(b":Method", b"GET")],
    "status-in-request": lambda b: [(b":status", b"200")] + b,
    "no-method": lambda b: b[1:],
    "no-scheme": lambda b: [b[0], b[2], b[3]],
    "no-path": lambda b: b[:3],
    "empty-path": lambda b: b[:3] + [(b":path", b"")],
    "connect-with-path": lambda b: [(b":method", b"CONNECT"), A, b[3]],
    "protocol-without-connect": lambda b: b + [(b":protocol", b"websocket")],
    # authority
    "no-authority": lambda b: [b[0], b[1], b[3]],
    "host-differs": lambda b: b + [(b"host", b"other.test")],
    "two-hosts": lambda b: [b[0], b[1], b[3], (b"host", HOST), (b"host", HOST)],
    "authority-with-slash": lambda b: [b[0], b[1], (b":authority", b"a/b"), b[3]],
    "authority-with-userinfo": lambda b: [b[0], b[1], (b":authority", b"user@h2.test"), b[3]],
    # request-line tokens an HTTP/1.1 backend would split differently
    "method-with-space": lambda b: [(b":method", b"GET /admin"), b[1], b[2], b[3]],
    "path-with-space": lambda b: b[:3] + [(b":path", b[3][1] + b" HTTP/1.1")],
    "path-with-tab": lambda b: b[:3] + [(b":path", b[3][1] + b"\tx")],
    "path-with-fragment": lambda b: b[:3] + [(b":path", b[3][1] + b"#frag")],
}

VALID: dict[str, tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes] | None]] = {
    # case: (fields after the pseudo-headers, or the whole list; a header the backend must see)
    "te-trailers": ([(b"te", b"trailers")], None),
    "te-trailers-mixed-case": ([(b"te", b"Trailers")], None),
    "empty-value": ([(b"x-empty", b"")], (b"x-empty", b"")),
    "inner-space": ([(b"x-inner", b"a b\tc")], (b"x-inner", b"a b\tc")),
    "host-same-as-authority": ([(b"host", HOST)], (b"host", HOST)),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    backend, fresh = Recorder(), Recorder()
    config = CONFIG.replace("BACKEND", backend.url).replace("FRESH", fresh.url)
    g = Gateway(config, tmp_path_factory.mktemp("gw"), workers=2)
    yield {"gw": g, "backend": backend, "fresh": fresh}
    g.stop()
    backend.stop()
    fresh.stop()


@pytest.fixture
def h2(env: dict[str, Any]) -> Iterator[RawH2]:
    client = RawH2(env["gw"].port)
    yield client
    client.close()


def _seen_since(backend: Recorder, n: int) -> list[bytes]:
    return [target for _, target, _ in backend.requests[n:]]


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_resets_only_its_stream_and_never_reaches_the_backend(
    case: str, env: dict[str, Any], h2: RawH2
) -> None:
    backend: Recorder = env["backend"]
    seen, errors = len(backend.requests), len(backend.errors)
    h2.send(h2.headers_frame(1, MALFORMED[case](_base(case))))
    assert h2.expect_reset(1) == PROTOCOL_ERROR
    # the same connection goes on: the next stream is proxied and answered
    assert h2.get(3, b"/after/" + case.encode()) == (200, b"seen /after/" + case.encode())
    assert h2.goaway is None
    assert _seen_since(backend, seen) == [b"/after/" + case.encode()]
    assert len(backend.errors) == errors
    assert b"/malformed/" + case.encode() not in backend.raw()


@pytest.mark.parametrize("case", list(VALID))
def test_valid_edge_case_is_answered(case: str, env: dict[str, Any], h2: RawH2) -> None:
    backend: Recorder = env["backend"]
    seen = len(backend.requests)
    extra, expected = VALID[case]
    path = b"/valid/" + case.encode()
    assert h2.get(1, path, extra) == (200, b"seen " + path)
    assert _seen_since(backend, seen) == [path]
    if expected is not None:
        assert expected in backend.requests[seen][2]


@pytest.mark.parametrize("case", ["te-trailers", "te-trailers-mixed-case"])
def test_te_is_not_forwarded_to_an_http11_backend(case: str, env: dict[str, Any], h2: RawH2) -> None:
    """TE is hop-by-hop (RFC 9110 §7.6.1). HTTP/2 allows only "trailers", which HTTP/2 backends (gRPC) need and
    get; an HTTP/1.1 backend gets no TE, as from an HTTP/1.1 client."""
    backend: Recorder = env["backend"]
    seen = len(backend.requests)
    path = b"/te/" + case.encode()
    assert h2.get(1, path, VALID[case][0]) == (200, b"seen " + path)
    assert _seen_since(backend, seen) == [path]
    assert b"te" not in [name.lower() for name, _ in backend.requests[seen][2]]


def test_host_without_authority_is_answered_with_that_host(env: dict[str, Any], h2: RawH2) -> None:
    backend: Recorder = env["backend"]
    seen = len(backend.requests)
    fields = [M, S, (b":path", b"/valid/host-only"), (b"host", b"only-host.test:8080")]
    h2.send(h2.headers_frame(1, fields))
    h2.wait(lambda: h2.finished(1), "the answer on stream 1")
    assert h2.response(1) == (200, b"seen /valid/host-only")
    assert _seen_since(backend, seen) == [b"/valid/host-only"]
    assert (b"host", b"only-host.test:8080") in backend.requests[seen][2]


def test_many_malformed_streams_on_one_connection_leave_it_serving(env: dict[str, Any], h2: RawH2) -> None:
    """Every malformed case on one connection, interleaved with valid streams, all in one write: each malformed
    stream is reset, each valid one answered, and the connection stays open."""
    backend: Recorder = env["backend"]
    seen = len(backend.requests)
    frames, bad, good = [], [], []
    stream_id = 1
    for case, build in MALFORMED.items():
        frames.append(h2.headers_frame(stream_id, build(_base(case))))
        bad.append(stream_id)
        frames.append(h2.headers_frame(stream_id + 2, request(b"/between/" + case.encode())))
        good.append((stream_id + 2, b"/between/" + case.encode()))
        stream_id += 4
    h2.send(*frames)
    h2.wait(lambda: all(h2.finished(s) for s in bad + [s for s, _ in good]), "every stream answered or reset")
    assert {s: h2.resets.get(s) for s in bad} == {s: PROTOCOL_ERROR for s in bad}
    assert [h2.response(s) for s, _ in good] == [(200, b"seen " + p) for _, p in good]
    assert sorted(_seen_since(backend, seen)) == sorted(p for _, p in good)
    assert h2.goaway is None and not h2.eof
    assert b"/malformed/" not in backend.raw()


@pytest.mark.parametrize("method, path, leak", [
    (b"G ET", b"/split/method", b"G ET"),
    (b"GET /admin", b"/split/method-target", b"GET /admin"),
    (b"GET", b"/split/a b", b"/split/a b"),
    (b"GET", b"/split/x HTTP/1.1\tHost: evil", b"/split/x HTTP/1.1"),
])
def test_method_or_path_that_would_split_the_request_line_never_reaches_the_backend(
    method: bytes, path: bytes, leak: bytes, env: dict[str, Any], h2: RawH2
) -> None:
    backend: Recorder = env["backend"]
    seen, errors = len(backend.requests), len(backend.errors)
    h2.send(h2.headers_frame(1, request(path, method)))
    assert h2.expect_reset(1) == PROTOCOL_ERROR
    assert h2.get(3, b"/split/after") == (200, b"seen /split/after")
    assert _seen_since(backend, seen) == [b"/split/after"]
    assert len(backend.errors) == errors
    raw = backend.raw()
    assert leak not in raw and b"/split/method" not in raw


@pytest.mark.parametrize("field", [(b"X-Upper", b"1"), (b"x-v", b"a\r\nb"), (b":path", b"/pseudo-in-trailers")])
def test_malformed_trailers_reset_the_stream_and_the_request_never_completes_at_the_backend(
    field: tuple[bytes, bytes], env: dict[str, Any], h2: RawH2
) -> None:
    backend: Recorder = env["backend"]
    done = len(backend.complete)
    path = b"/trailers/" + field[0].strip(b":")
    h2.post_with_trailers(1, path, [(b"x-checksum", b"1"), field])
    assert h2.expect_reset(1) == PROTOCOL_ERROR
    assert h2.get(3, b"/trailers/after") == (200, b"seen /trailers/after")
    assert h2.goaway is None
    assert backend.complete[done:] == [b"/trailers/after"]


def test_valid_trailers_are_accepted(env: dict[str, Any], h2: RawH2) -> None:
    backend: Recorder = env["backend"]
    done = len(backend.complete)
    h2.post_with_trailers(1, b"/trailers/valid", [(b"x-checksum", b"1")])
    h2.wait(lambda: h2.finished(1), "the answer on stream 1")
    assert h2.response(1) == (200, b"seen /trailers/valid")
    assert backend.complete[done:] == [b"/trailers/valid"]


def test_request_with_trailers_reaches_an_idle_upstream_as_exactly_one_message(
    env: dict[str, Any], h2: RawH2
) -> None:
    backend: Recorder = env["backend"]
    assert h2.get(1, b"/trailers/warm") == (200, b"seen /trailers/warm")    # this worker now has an idle upstream
    errors = len(backend.errors)
    h2.post_with_trailers(3, b"/trailers/idle", [(b"x-checksum", b"1")])
    h2.wait(lambda: h2.finished(3), "the answer on stream 3")
    assert h2.response(3) == (200, b"seen /trailers/idle")
    assert h2.get(5, b"/trailers/next") == (200, b"seen /trailers/next")
    assert backend.errors[errors:] == []        # nothing after the request's end on the kept-alive connection
    assert b"body\r\n0\r\n\r\n0\r\n\r\n" not in backend.raw()


@pytest.mark.parametrize("prefix", [b"/empty-data", b"/fresh/empty-data"], ids=["upstream-bound", "connecting"])
def test_empty_data_frame_ending_a_request_is_not_a_second_end_of_body(
    prefix: bytes, env: dict[str, Any], h2: RawH2
) -> None:
    """httpx ends a streamed body with an empty DATA frame carrying END_STREAM. Chunk-framed for an HTTP/1.1
    backend, an empty piece would be ``0\r\n\r\n``: the body's end, with the real end a stray next request on
    the kept-alive connection. Bound: the worker has an idle upstream (warmed first); connecting: the ``fresh``
    backend, not warmed, so unless an earlier test left this worker a connection to it, the connection is made
    while the body is held."""
    backend: Recorder = env["fresh"] if prefix.startswith(b"/fresh") else env["backend"]
    if backend is env["backend"]:
        assert h2.get(1, prefix + b"/warm") == (200, b"seen " + prefix + b"/warm")
    errors = len(backend.errors)
    h2.send(h2.headers_frame(3, request(prefix + b"/post", b"POST"), end_stream=False),
            h2.data_frame(3, b"body"),
            h2.data_frame(3, b"", end_stream=True))
    h2.wait(lambda: h2.finished(3), "the answer on stream 3")
    assert h2.response(3) == (200, b"seen " + prefix + b"/post")
    assert h2.get(5, prefix + b"/next") == (200, b"seen " + prefix + b"/next")
    assert backend.errors[errors:] == []
    assert b"body\r\n0\r\n\r\n0\r\n\r\n" not in backend.raw()


@pytest.mark.parametrize("length", [b"x", b"+1", b"1_0", b"01"])
def test_invalid_content_length_is_never_forwarded(length: bytes, env: dict[str, Any], h2: RawH2) -> None:
    """h2 itself refuses a non-numeric content-length, as a connection error (GOAWAY), which RFC 9113 §5.4.1
    allows for any stream error; a length it reads with int() but an HTTP/1.1 backend may not ("+1", "1_0", "01")
    the gateway refuses itself (only canonical digits are forwarded). Either way nothing reaches the backend."""
    backend: Recorder = env["backend"]
    seen = len(backend.requests)
    h2.send(h2.headers_frame(1, request(b"/malformed/content-length", b"POST") + [(b"content-length", length)],
                             end_stream=False), h2.data_frame(1, b"x", end_stream=True))
    h2.wait(lambda: h2.finished(1) or h2.goaway is not None, "a reset or GOAWAY")
    assert h2.resets.get(1, h2.goaway) == PROTOCOL_ERROR
    assert 1 not in h2.ended
    assert _seen_since(backend, seen) == []
    assert b"/malformed/content-length" not in backend.raw()


def test_malformed_trailers_while_connecting_upstream_leave_no_task_error(env: dict[str, Any], h2: RawH2) -> None:
    g: Gateway = env["gw"]
    fresh: Recorder = env["fresh"]
    logged = len(g.logs())
    done = len(fresh.complete)
    h2.post_with_trailers(1, b"/fresh/trailers", [(b"X-Upper", b"1")])
    assert h2.expect_reset(1) == PROTOCOL_ERROR
    assert h2.get(3, b"/fresh/after") == (200, b"seen /fresh/after")
    assert fresh.complete[done:] == [b"/fresh/after"]
    new = g.logs()[logged:]
    assert "Traceback" not in new and "never retrieved" not in new, new


@pytest.mark.parametrize("method, path", [
    (b"GET", b"http://internal.test/admin"),
    (b"GET", b"admin"),
    (b"GET", b"*"),
])
def test_path_that_is_not_origin_form_is_reset_and_never_reaches_the_backend(
    method: bytes, path: bytes, env: dict[str, Any], h2: RawH2
) -> None:
    backend: Recorder = env["backend"]
    seen = len(backend.requests)
    h2.send(h2.headers_frame(1, request(path, method, b"abs.test")))    # routed by Host(`abs.test`)
    h2.wait(lambda: h2.finished(1), "the answer on stream 1")
    assert h2.get(3, b"/abs/after") == (200, b"seen /abs/after")
    assert _seen_since(backend, seen) == [b"/abs/after"], "the backend got the request"
    assert h2.resets.get(1) == PROTOCOL_ERROR
