"""Per-worker pools of idle keep-alive connections to one backend (scheme, endpoint).

Pools outlive config generations: a reload that keeps a backend keeps its warm connections. Idle connections
are a LIFO stack (the most recently used one is the most likely to still be open); an idle connection that
the backend closed is dropped when popped, and the worker's sweep closes those idle past ``idle_timeout``.
Compiled, the pool is a native class (``upstream_pool.pxd``): ``get_idle``/``release`` are C calls.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from ...shared import transport

if TYPE_CHECKING:
    from ...shared.transport import Endpoint
    from ..upstream.http1 import UpstreamProtocol


P = TypeVar("P", bound=asyncio.BaseProtocol)


class UpstreamPool:
    def __init__(self, loop: asyncio.AbstractEventLoop, endpoint: Endpoint, ssl: object | None,
                 server_hostname: str | None, protocol_factory: Callable[[UpstreamPool], UpstreamProtocol],
                 max_idle: int = 256, h2_ssl: object | None = None) -> None:
        self.loop = loop
        self.endpoint = endpoint        # a TCP (host, port), a unix socket path or a vsock (cid, port)
        self.ssl = ssl
        self.h2_ssl = h2_ssl            # the same TLS settings offering ALPN h2, for HTTP/2 (gRPC) connections
        self.server_hostname = server_hostname
        self.max_idle = max_idle
        self.proxy_version = 0          # a PROXY protocol header starts each connection (then never pooled)
        self.idle_timeout = 90.0
        self.idle: list[UpstreamProtocol] = []
        self._factory = protocol_factory

    def get_idle(self) -> UpstreamProtocol | None:
        idle = self.idle
        while idle:
            up = idle.pop()
            if up.alive:
                return up
        return None

    def release(self, up: UpstreamProtocol) -> None:
        if up.alive and len(self.idle) < self.max_idle:
            up.idle_since = monotonic()
            self.idle.append(up)
        else:
            up.close()

    def discard(self, up: UpstreamProtocol) -> None:
        try:
            self.idle.remove(up)
        except ValueError:
            pass

    async def connect(self, timeout: float) -> UpstreamProtocol:
        """A new pooled HTTP/1.1 connection; raises OSError or asyncio.TimeoutError."""
        _, up = await asyncio.wait_for(self.open(lambda: self._factory(self), self.ssl), timeout)
        return up

    def open(self, factory: Callable[[], P], tls: ssl.SSLContext | None = None) -> Awaitable[tuple[Any, P]]:
        """A new connection to this pool's server with the protocol ``factory()`` makes, over TLS with ``tls``
        (TCP servers only): how every upstream side (HTTP/1.1, HTTP/2, WebSocket, TCP relay, mirrors) reaches
        the server."""
        where = self.endpoint
        if where.transport != "tcp":
            return self._open_local(factory)
        kwargs: dict[str, Any] = {} if tls is None else {"ssl": tls, "server_hostname": self.server_hostname}
        return self.loop.create_connection(factory, *where.address, **kwargs)

    async def _open_local(self, factory: Callable[[], P]) -> tuple[Any, P]:
        """Over a unix socket or vsock (``shared/transport.py`` says why through ``create_unix_connection``)."""
        sock = await transport.connect(self.loop, self.endpoint)
        return await self.loop.create_unix_connection(factory, sock=sock)

    def sweep(self, now: float) -> None:
        """Close idle connections older than the idle timeout (oldest are at the bottom of the stack)."""
        idle = self.idle
        cutoff = now - self.idle_timeout
        stale = 0
        while stale < len(idle) and idle[stale].idle_since < cutoff:
            idle[stale].close()
            stale += 1
        if stale:
            del idle[:stale]

    def close(self) -> None:
        for up in self.idle:
            up.close()
        self.idle.clear()
