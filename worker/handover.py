"""``Handover``: the first protocol of every HTTP entrypoint connection, which picks HTTP/1.1 or HTTP/2 and then
steps aside.

Over TLS, ALPN ``h2`` selects HTTP/2 (anything else, HTTP/1.1); in cleartext the first bytes are compared with the
HTTP/2 connection preface (h2c with prior knowledge). ``Handover`` then installs the real protocol with
``transport.set_protocol`` and replays the bytes it read, so HTTP/1.1 keeps its fast path (one extra object per
connection, nothing per request).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .http1 import ClientProtocol
from .http2 import H2Server

if TYPE_CHECKING:
    from .limits import Limits
    from .process import Worker

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Handover(asyncio.Protocol):
    """Chooses HTTP/1.1 or HTTP/2 for a new connection, installs that protocol and replays what it read."""

    __slots__ = ("worker", "entrypoint", "scheme", "port", "tls", "transport", "buf", "last_active", "client")

    def __init__(self, worker: Worker, entrypoint: str, scheme: bytes, port: int, tls: bool,
                 client: tuple[str, int] | None = None) -> None:
        self.client = client                   # named by a trusted PROXY protocol header (proxy_protocol.py)
        self.worker = worker
        self.entrypoint = entrypoint
        self.scheme = scheme
        self.port = port
        self.tls = tls
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = b""
        self.last_active = worker.now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.tls:
            ssl_object = transport.get_extra_info("ssl_object")
            self._switch(ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2", b"")
        else:
            self.worker.connections.add(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = min(len(buf), len(PREFACE))
        if buf[:n] != PREFACE[:n]:
            self._switch(False, buf)
        elif n == len(PREFACE):
            self._switch(True, buf)
        else:
            self.buf = buf

    def _switch(self, http2: bool, data: bytes) -> None:
        self.worker.connections.discard(self)
        proto: asyncio.Protocol
        if http2:
            proto = H2Server(self.worker, self.entrypoint, self.scheme, self.port)
        else:
            proto = ClientProtocol(self.worker, self.entrypoint, self.scheme, self.port)
        if self.client is not None:
            proto.client = self.client
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        if data:
            proto.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.connections.discard(self)

    def sweep(self, now: float, limits: Limits) -> None:
        """A cleartext connection whose first bytes are not complete within the header timeout is closed."""
        if self.last_active < now - limits.header_timeout:
            self.close_if_idle()

    def close_if_idle(self) -> bool:
        self.transport.close()
        return True
