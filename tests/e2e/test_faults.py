"""Faults against the real binary: backends that reset, babble, flood headers or go silent, and clients that
leave mid-upload. Each test proves the client gets the right status (or a connection that ends, never one that
hangs), the worker did not crash (same pid, no traceback) and the gateway keeps serving.
"""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from harness import wait_until
from recording_backend import RawClient, RecordingBackend

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{{web}}"
[admin]
address = "127.0.0.1:{{admin}}"
[routers.bad]
rule = "PathPrefix(`/`)"
service = "bad"
[routers.ok]
rule = "PathPrefix(`/ok`)"
service = "ok"
[services.bad.load_balancer]
servers = [{{url = "http://127.0.0.1:{bad}"}}]
[services.bad.load_balancer.timeouts]
response_header = "700ms"
[services.bad.load_balancer.passive_health]
max_failures = 0
[services.ok.load_balancer]
servers = [{{url = "{ok}"}}]
"""


class ScriptedBackend:
    """Accepts connections and runs ``behaviour(conn)`` for each, in a thread."""

    def __init__(self, behaviour) -> None:  # type: ignore[no-untyped-def]
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.behaviour = behaviour
        self.received = bytearray()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        try:
            self.behaviour(self, c)
        except OSError:
            pass

    def read_head(self, c: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        self.received += data
        return data

    def close(self) -> None:
        self.srv.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def rig(gateway):
    ok = RecordingBackend()
    started = []

    def start(behaviour):  # type: ignore[no-untyped-def]
        bad = ScriptedBackend(behaviour)
        g = gateway(CONFIG.format(bad=bad.port, ok=ok.url), workers=1)
        started.append(bad)
        return g, bad

    yield start
    for b in started:
        b.close()
    ok.stop()


def _still_serving(g, pids: list[int]) -> None:
    c = RawClient(g.port)
    c.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
    r = c.read_response()
    c.close()
    assert r is not None and (r[0], r[2]) == (200, b"ok")
    assert g.worker_pids() == pids, "a worker died"
    assert "Traceback" not in g.logs()


def _reset(c: socket.socket) -> None:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def test_backend_reset_mid_response_ends_the_client_connection(rig):
    def behaviour(b, c):  # type: ignore[no-untyped-def]
        b.read_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        _reset(c)
    g, _bad = rig(behaviour)
    pids = g.worker_pids()
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.read_response() is None          # truncated: never a complete response
    assert c.closed(), "a truncated response must end the connection, not leave it hanging"
    assert c.buf == b"" or len(c.buf) < 100000
    _still_serving(g, pids)


def test_backend_reset_mid_chunked_response_ends_the_client_connection(rig):
    def behaviour(b, c):  # type: ignore[no-untyped-def]
        b.read_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        _reset(c)
    g, _bad = rig(behaviour)
    pids = g.worker_pids()
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.read_response() is None
    assert c.closed()
    assert b"0\r\n\r\n" not in c.buf, "the truncated body must not be terminated as if complete"
    _still_serving(g, pids)


def test_backend_garbage_is_502_and_the_client_connection_stays_usable(rig):
    def behaviour(b, c):  # type: ignore[no-untyped-def]
        b.read_head(c)
        c.sendall(bytes(range(256)) * 4)
    g, _bad = rig(behaviour)
    pids = g.worker_pids()
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    r = c.read_response()
    assert r is not None and r[0] == 502
    c.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.read_response()[0] == 200
    _still_serving(g, pids)


def test_backend_endless_header_block_is_502(rig):
    def behaviour(b, c):  # type: ignore[no-untyped-def]
        b.read_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nX-Flood: ")
        for _ in range(64):                        # 4 MiB of one header value that never ends
            c.sendall(b"v" * 65536)
    g, _bad = rig(behaviour)
    pids = g.worker_pids()
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    r = c.read_response()
    assert r is not None and r[0] == 502
    _still_serving(g, pids)


def test_backend_that_never_answers_is_504_at_the_timeout(rig):
    hold = threading.Event()

    def behaviour(b, c):  # type: ignore[no-untyped-def]
        b.read_head(c)
        hold.wait(10)
    g, _bad = rig(behaviour)
    pids = g.worker_pids()
    c = RawClient(g.port)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    r = c.read_response()
    hold.set()
    assert r is not None and r[0] == 504
    _still_serving(g, pids)


def test_client_leaving_mid_upload_aborts_the_upstream_request(rig):
    got = threading.Event()
    ended = threading.Event()

    def behaviour(b, c):  # type: ignore[no-untyped-def]
        b.read_head(c)
        got.set()
        while c.recv(65536):
            pass
        ended.set()                               # the gateway closed the upstream connection
    g, _bad = rig(behaviour)
    pids = g.worker_pids()
    c = RawClient(g.port)
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n" + b"u" * 100_000)
    assert got.wait(5)
    c.close()
    wait_until(ended.is_set, timeout=5, what="upstream request aborted")
    _still_serving(g, pids)
