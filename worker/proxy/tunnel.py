"""A byte tunnel between two connected transports: what a WebSocket becomes after its ``101`` and what a TCP
route is from its first byte.

Each side gets a ``Pipe`` protocol that writes what it receives into the other side's transport. Invariants:
- Back-pressure: when one side's write buffer fills (``pause_writing``), the other side stops reading until
  it drains; memory per tunnel stays bounded by the transports' high-water marks.
- Half-close: EOF from one side becomes ``write_eof`` on the other (TLS transports, which cannot half-close,
  are closed after their buffer drains instead); the tunnel closes when both directions ended, or when either
  side is lost.
- The tunnel sits in the worker's ``connections`` set like a client connection and is never busy: its
  ``sweep`` closes it after ``[limits] idle_timeout`` without traffic in either direction, and a draining worker
  closes it. ``on_close`` runs exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..limits import Limits
    from ..process import Worker


class Pipe(asyncio.Protocol):
    """One side of a tunnel."""

    __slots__ = ("tunnel", "transport", "peer", "eof")

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer: Pipe = None  # type: ignore[assignment]
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.tunnel.closed:
            transport.close()
        elif self.peer.transport is None:
            transport.pause_reading()      # nowhere to put bytes yet: read once the other side is there
        else:
            self.peer.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.tunnel.last_active = self.tunnel.worker.now
        tunnel = self.tunnel
        tunnel.bytes += len(data)
        if self is tunnel.a:
            tunnel.bytes_from_a += len(data)
        peer = self.peer.transport
        if peer is not None and not peer.is_closing():
            peer.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer.transport
        if self.peer.eof or peer is None:
            self.tunnel.close()
            return False
        if peer.can_write_eof():
            peer.write_eof()
            return True            # keep our transport open: the other direction may still carry data
        peer.close()               # TLS cannot half-close: end after the buffered bytes are out
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # type: ignore[assignment]
        self.tunnel.close()

    def pause_writing(self) -> None:
        if self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Tunnel:
    """Two pipes joined; ``a`` and ``b`` are the protocols to install on each side."""

    __slots__ = ("worker", "a", "b", "last_active", "closed", "bytes", "bytes_from_a", "on_close", "entrypoint")

    def __init__(self, worker: Worker, entrypoint: str, on_close: Callable[[Tunnel], None] | None = None) -> None:
        self.worker = worker
        self.entrypoint = entrypoint
        self.a = Pipe(self)
        self.b = Pipe(self)
        self.a.peer, self.b.peer = self.b, self.a
        self.last_active = worker.now
        self.closed = False
        self.bytes = 0                   # both ways
        self.bytes_from_a = 0            # of which a sent (the client, for TCP relays)
        self.on_close = on_close

    @property
    def transport(self) -> asyncio.Transport:
        """The client side (the worker's drain aborts ``conn.transport``)."""
        return _Both(self)  # type: ignore[return-value]

    def join(self, a: asyncio.Transport, b: asyncio.Transport) -> None:
        """Install the pipes on two live transports (``set_protocol``) and start reading both."""
        for pipe, transport in ((self.a, a), (self.b, b)):
            transport.set_protocol(pipe)
            pipe.connection_made(transport)
        self.register()
        a.resume_reading()

    def register(self) -> None:
        """Both sides are connected (the pipes were made the transports' protocols): track the tunnel."""
        if not self.closed:
            self.worker.connections.add(self)  # type: ignore[arg-type]

    def sweep(self, now: float, limits: Limits) -> None:
        if self.last_active < now - limits.idle_timeout:
            self.close_if_idle()

    def close_if_idle(self) -> bool:
        self.close()
        return True

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.worker.connections.discard(self)  # type: ignore[arg-type]
        for pipe in (self.a, self.b):
            if pipe.transport is not None:
                if abort:
                    pipe.transport.abort()
                else:
                    pipe.transport.close()
        if self.on_close is not None:
            self.on_close(self)


class _Both:
    """What ``conn.transport.abort()`` in the worker's drain reaches: both sides of the tunnel."""

    __slots__ = ("tunnel",)

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def abort(self) -> None:
        self.tunnel.close(abort=True)

    def close(self) -> None:
        self.tunnel.close()
