"""A recording backend for framing tests: it logs exactly the bytes it receives, per connection, and parses them
with h11 (a strict, independent HTTP/1.1 parser) to know which complete requests a real backend would see.

Each complete request is answered ``200`` with body ``ok`` (through h11, keep-alive), unless its target is a key
of ``script``: then the scripted raw bytes are written as they are (and the connection's h11 state restarts,
so the gateway may reuse it). Every connection records whether bytes arrived after a scripted response
(``reused_after_script``) and whether the peer closed it (``closed``).

Runs in the test process on its own event loop thread; the gateway under test is the real binary.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import h11

OK = b"ok"


@dataclass
class Conn:
    raw: bytearray = field(default_factory=bytearray)
    requests: list[tuple[str, str, list[tuple[bytes, bytes]], bytes]] = field(default_factory=list)
    error: str | None = None
    closed: bool = False
    scripted: bool = False                 # a scripted response was written on it
    reused_after_script: bool = False


class _Proto(asyncio.Protocol):
    def __init__(self, owner: RecordingBackend) -> None:
        self.owner = owner
        self.rec = Conn()
        self.h = h11.Connection(h11.SERVER)
        self.cur: list | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.owner.conns.append(self.rec)

    def connection_lost(self, exc: Exception | None) -> None:
        self.rec.closed = True

    def data_received(self, data: bytes) -> None:
        rec = self.rec
        if rec.scripted:
            rec.reused_after_script = True
        rec.raw += data
        if rec.error is not None:
            return
        self.h.receive_data(data)
        try:
            while True:
                ev = self.h.next_event()
                if ev is h11.NEED_DATA or ev is h11.PAUSED:
                    if ev is h11.PAUSED and self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
                        self.h.start_next_cycle()
                        continue
                    return
                if isinstance(ev, h11.Request):
                    self.cur = [ev.method.decode(), ev.target.decode("latin-1"), list(ev.headers), bytearray()]
                elif isinstance(ev, h11.Data):
                    self.cur[3] += ev.data  # type: ignore[index]
                elif isinstance(ev, h11.EndOfMessage):
                    method, target, headers, body = self.cur  # type: ignore[misc]
                    rec.requests.append((method, target, headers, bytes(body)))
                    self._answer(target)
                elif isinstance(ev, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as e:
            rec.error = str(e)
            self.transport.close()  # type: ignore[union-attr]

    def _answer(self, target: str) -> None:
        script = self.owner.script.get(target)
        if script is not None:
            self.rec.scripted = True
            self.rec.reused_after_script = False
            self.transport.write(script)  # type: ignore[union-attr]
            self.h = h11.Connection(h11.SERVER)
            return
        out = self.h.send(h11.Response(status_code=200, headers=[("Content-Length", str(len(OK)))]))
        out += self.h.send(h11.Data(data=OK)) + self.h.send(h11.EndOfMessage())  # type: ignore[operator]
        self.transport.write(out)  # type: ignore[union-attr]
        if self.h.our_state is h11.MUST_CLOSE:
            self.transport.close()  # type: ignore[union-attr]
        else:
            self.h.start_next_cycle()


class RecordingBackend:
    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.script: dict[str, bytes] = {}
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                self.loop.create_server(lambda: _Proto(self), "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            self._server = server
            ready.set()
            self.loop.run_forever()
            server.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)
        self.url = f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget what was recorded (connections stay open; only new bytes count from now on)."""
        fresh: list[Conn] = []

        def swap() -> None:
            for c in self.conns:
                c.raw = bytearray()
                c.requests = []
            self.conns = [c for c in self.conns if not c.closed]
            fresh.extend(self.conns)

        self.call(swap)

    def call(self, fn) -> None:  # type: ignore[no-untyped-def]
        done = threading.Event()

        def wrapped() -> None:
            try:
                fn()
            finally:
                done.set()
        self.loop.call_soon_threadsafe(wrapped)
        done.wait(5)

    def requests(self) -> list[tuple[str, str, list[tuple[bytes, bytes]], bytes]]:
        return [r for c in list(self.conns) for r in c.requests]

    def raw(self) -> bytes:
        return b"".join(bytes(c.raw) for c in list(self.conns))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# -- a raw-socket client: sends exact bytes and reads responses without normalizing anything


class RawClient:
    """One TCP connection to the gateway. ``read_response`` parses one response (Content-Length, chunked or
    close-delimited); ``closed`` tells whether the gateway closed (or reset) the connection within a deadline."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.reset = True
            return False

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self) -> tuple[int, dict[bytes, bytes], bytes] | None:
        """(status, headers (lowercase names, last wins), body), skipping 1xx; None if the connection ended."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self._fill():
                    return None
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0][9:12])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if 100 <= status < 200:
                continue
            if status in (204, 304):
                return status, headers, b""
            if b"content-length" in headers:
                n = int(headers[b"content-length"])
                while len(self.buf) < n:
                    if not self._fill():
                        return None
                body, self.buf = self.buf[:n], self.buf[n:]
                return status, headers, body
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = b""
                while True:
                    while b"\r\n" not in self.buf:
                        if not self._fill():
                            return None
                    line, _, self.buf = self.buf.partition(b"\r\n")
                    size = int(line.split(b";")[0], 16)
                    while len(self.buf) < size + 2:
                        if not self._fill():
                            return None
                    body += self.buf[:size]
                    self.buf = self.buf[size + 2:]
                    if size == 0:
                        return status, headers, body
            while self._fill():
                pass
            body, self.buf = self.buf, b""
            return status, headers, body

    def closed(self, timeout: float = 3.0) -> bool:
        """True once the gateway closed or reset the connection (extra bytes before that are discarded)."""
        import time

        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self._fill()
            except TimeoutError:
                break
        return self.eof

    def close(self) -> None:
        self.sock.close()
