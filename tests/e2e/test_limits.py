"""Resource limits (``[limits]``) against the real binary: slow clients are cut at their deadlines, connection,
body, header and pipeline limits hold, and a client that never reads cannot pin unbounded memory.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import psutil
import pytest
from harness import wait_until
from recording_backend import RawClient, RecordingBackend

ROUTES = """
[entrypoints.web]
address = "127.0.0.1:{{web}}"
[admin]
address = "127.0.0.1:{{admin}}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "svc"
[routers.who]
rule = "PathPrefix(`/who`)"
service = "whoami@internal"
[services.svc.load_balancer]
servers = [{{url = "{url}"}}]
"""

SHORT = """
[limits]
header_timeout = "1s"
idle_timeout = "1.5s"
body_timeout = "1s"
max_body_bytes = 1000
max_header_count = 10
max_connections = 30
max_pipeline = 4
"""

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture
def rec():
    b = RecordingBackend()
    yield b
    b.stop()


@pytest.fixture
def short(gateway, rec):
    return gateway(ROUTES.format(url=rec.url) + SHORT, workers=1)


def test_limits_are_validated_at_load(gateway, tmp_path):
    from a3s_gateway.shared.config import GatewayConfig
    from a3s_gateway.shared.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        GatewayConfig.from_dict({"limits": {"header_timeout": 0, "max_pipeline": 0, "max_header_bytes": "big"}})
    assert sorted(p.path for p in e.value.problems) == [
        "limits.header_timeout", "limits.max_header_bytes", "limits.max_pipeline"]


def test_slowloris_head_is_cut_at_the_header_timeout_with_408(short):
    c = RawClient(short.port)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
    t0 = time.monotonic()
    c.sock.settimeout(0.25)
    while time.monotonic() - t0 < 5 and not c.eof:     # one header byte every 250 ms: never a complete head
        if not c.send(b"X"):
            break
        try:
            c._fill()
        except TimeoutError:
            pass
    elapsed = time.monotonic() - t0
    assert c.buf.startswith(b"HTTP/1.1 408 "), c.buf[:80]
    assert c.eof and 0.9 < elapsed < 2.5


def test_connection_that_sends_nothing_is_closed_silently(short):
    c = RawClient(short.port)
    t0 = time.monotonic()
    assert c.closed(timeout=4)
    assert c.buf == b"" and time.monotonic() - t0 < 2.5


def test_idle_keep_alive_connection_is_closed(short):
    c = RawClient(short.port)
    c.send(GET)
    assert c.read_response()[0] == 200
    t0 = time.monotonic()
    assert c.closed(timeout=4)
    assert 1.0 < time.monotonic() - t0 < 2.8


def test_stalled_request_body_gets_408_and_no_complete_request_is_forwarded(short, rec):
    c = RawClient(short.port)
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\n" + b"x" * 10)
    r = c.read_response()
    assert r is not None and r[0] == 408
    assert c.closed()
    assert rec.requests() == []
    wait_until(lambda: all(conn.closed for conn in rec.conns if conn.raw), what="upstream request aborted")


def test_max_body_bytes_refuses_declared_and_streamed_bodies(short, rec):
    c = RawClient(short.port)
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n")
    assert c.read_response()[0] == 413 and c.closed()
    c = RawClient(short.port)
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"y" * 1024 + b"\r\n")
    assert c.read_response()[0] == 413 and c.closed()
    c = RawClient(short.port)
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"z" * 1000)
    assert c.read_response()[0] == 200
    assert [b for _m, _t, _h, b in rec.requests()] == [b"z" * 1000]


def test_max_header_count_is_431(short):
    c = RawClient(short.port)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\n")
    assert c.read_response()[0] == 431 and c.closed()


def test_connections_past_max_connections_get_503_and_others_still_work(short):
    held = [RawClient(short.port) for _ in range(30)]
    for c in held:
        c.send(b"GET / HTTP/1.1\r\n")          # a head in progress: each is a live client connection
    extra = RawClient(short.port)
    r = extra.read_response()
    assert r is not None and r[0] == 503 and extra.closed()
    for c in held[:5]:
        c.close()
    def admitted() -> bool:
        c = RawClient(short.port)
        c.send(GET)
        r = c.read_response()
        c.close()
        return r is not None and r[0] == 200
    wait_until(admitted, timeout=5, what="a slot freed")
    for c in held[5:]:
        c.close()


def test_pipelined_requests_are_answered_in_order_past_max_pipeline(short, rec):
    c = RawClient(short.port)
    c.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(12)))
    assert [c.read_response()[0] for _ in range(12)] == [200] * 12
    assert [t for _m, t, _h, _b in rec.requests()] == [f"/p{i}" for i in range(12)]


def _worker_rss(g) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in g.worker_pids())


def test_client_that_never_reads_pipelined_answers_cannot_pin_memory(gateway, rec):
    g = gateway(ROUTES.format(url=rec.url), workers=1)
    before = _worker_rss(g)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # before connect, so the window stays small
    s.connect(("127.0.0.1", g.port))
    s.settimeout(1.0)
    # whoami echoes the 2 KB header, so each answer is ~3 KB: 30,000 of them (90 MB) if nothing pushed back;
    # the 60 MB of requests are more than the kernel buffers (tcp_rmem + tcp_wmem) can absorb
    request = b"GET /who HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n"
    batch, total, sent = request * 100, 30_000, 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sent < total:
        try:
            s.sendall(batch)
        except TimeoutError:
            break                                             # the gateway stopped reading us: back-pressure
        sent += 100
    grown = _worker_rss(g) - before
    s.close()
    assert sent < total, "the gateway kept reading requests from a client that reads no answers"
    assert grown < 40 << 20, f"worker memory grew by {grown >> 20} MiB"


class _Firehose:
    """A backend answering with an endless Content-Length body, counting the bytes the kernel accepted."""

    def __init__(self) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.sent = 0
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        c, _ = self.srv.accept()
        c.recv(65536)
        c.settimeout(0.2)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 40))
        chunk = b"x" * 65536
        while not self.stop:
            try:
                self.sent += c.send(chunk)
            except TimeoutError:
                continue
            except OSError:
                return
        c.close()


def test_slow_reader_back_pressure_bounds_what_the_backend_can_push(gateway):
    fire = _Firehose()
    g = gateway(ROUTES.format(url=f"http://127.0.0.1:{fire.port}"), workers=1)
    before = _worker_rss(g)
    s = socket.create_connection(("127.0.0.1", g.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(GET)

    def plateau() -> bool:
        first = fire.sent
        time.sleep(0.5)                       # measuring a rate: bytes accepted over half a second
        return fire.sent > 0 and fire.sent == first
    wait_until(plateau, timeout=15, interval=0, what="the backend blocked by back-pressure")
    grown = _worker_rss(g) - before
    fire.stop = True
    s.close()
    assert fire.sent < 64 << 20, f"backend pushed {fire.sent >> 20} MiB into a client that never reads"
    assert grown < 40 << 20


@pytest.mark.slow
def test_2000_slowloris_connections_do_not_slow_a_normal_client(gateway, rec):
    g = gateway(ROUTES.format(url=rec.url), workers=2)
    loris = []
    for _ in range(2000):
        s = socket.create_connection(("127.0.0.1", g.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-")
        loris.append(s)
    c = RawClient(g.port)
    lat = []
    for _ in range(300):
        t0 = time.perf_counter()
        c.send(GET)
        assert c.read_response()[0] == 200
        lat.append(time.perf_counter() - t0)
    for s in loris:
        s.close()
    p99 = statistics.quantiles(lat, n=100)[98]
    assert p99 < 0.050, f"p99 {p99 * 1000:.1f} ms with 2000 slowloris connections"
