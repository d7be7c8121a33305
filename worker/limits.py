"""Resource limits of HTTP entrypoints (the ``[limits]`` config table) and their enforcement off the hot path.

- ``Limits``: the values of one generation, read by ``ClientProtocol`` when a connection starts (a reload applies
  to new connections; timeouts are read by the sweep, so they apply to every connection at once).
- ``ConnectionSet``: the worker's set of client connections, counted per entrypoint so the accept path can
  refuse a connection past ``max_connections`` in O(1). Protocol switches (``Handover`` → HTTP/1.1 or HTTP/2,
  HTTP/1.1 → WebSocket tunnel) remove one object and add the next, so the count follows the connection.
- ``sweep_clients``: run by the worker's periodic sweep (every 0.5 s). It enforces, per connection:
  the header timeout (a request head, or a fresh connection's first bytes, not complete in time: 408 and close;
  a connection that sent nothing is closed silently), the idle keep-alive timeout, and the body timeout (no
  request body bytes for that long while the gateway is reading: 408, or a reset when a response started; on
  HTTP/2 per stream, by ``H2Server.sweep_bodies``, gRPC streams aside).
  Time during which the gateway itself holds the client back (an exchange in flight, reading paused for
  back-pressure) never counts against the client.

Invariant: no limit is checked per byte or per header outside the loops that already run (``http1`` counts
header bytes and fields as it collects them); the timeouts cost nothing per request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import responses

if TYPE_CHECKING:
    from .process import Worker

DEFAULTS: dict[str, Any] = {
    "max_uri_bytes": 8192,
    "max_header_bytes": 32768,
    "max_header_count": 100,
    "max_body_bytes": 0,
    "header_timeout": 15.0,
    "idle_timeout": 60.0,
    "body_timeout": 60.0,
    "max_connections": 10000,
    "max_pipeline": 16,
}


class Limits:
    __slots__ = tuple(DEFAULTS) + ("max_unparsed",)

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        merged = {**DEFAULTS, **(values or {})}
        for key in DEFAULTS:
            setattr(self, key, merged[key])
        # bytes the parser may hold without completing an element (a header line, a chunk-size line): a single
        # header value is only handed over when complete, so this bounds the memory of one in progress
        self.max_unparsed = self.max_uri_bytes + self.max_header_bytes + 4096


class ConnectionSet(set):
    """``set`` of connection protocols that also counts them per ``entrypoint`` attribute."""

    __slots__ = ("per_entrypoint",)

    def __init__(self) -> None:
        super().__init__()
        self.per_entrypoint: dict[Any, int] = {}

    def add(self, conn: Any) -> None:
        if conn not in self:
            set.add(self, conn)
            ep = getattr(conn, "entrypoint", None)
            self.per_entrypoint[ep] = self.per_entrypoint.get(ep, 0) + 1

    def discard(self, conn: Any) -> None:
        if conn in self:
            set.remove(self, conn)
            ep = getattr(conn, "entrypoint", None)
            self.per_entrypoint[ep] -= 1

    def remove(self, conn: Any) -> None:
        if conn not in self:
            raise KeyError(conn)
        self.discard(conn)

    def count(self, entrypoint: str) -> int:
        return self.per_entrypoint.get(entrypoint, 0)


class Refused(asyncio.Protocol):
    """A connection past ``max_connections``: answered 503 at once and closed (the worker keeps accepting, so
    the listen queue never fills up with connections nobody serves)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(responses.error(503, "Too many connections", close=True))  # type: ignore[attr-defined]
        transport.close()


def sweep_clients(worker: Worker, now: float) -> None:
    from .http1 import ClientProtocol  # late: http1 imports nothing from here at module level
    from .http2 import H2Server, Handover

    lim: Limits = worker.limits
    idle_cut = now - lim.idle_timeout
    body_cut = now - lim.body_timeout
    fresh_cut = now - lim.header_timeout
    for c in list(worker.connections):
        cls = c.__class__
        if cls is ClientProtocol:
            if c.closed:
                continue
            if c.queue:
                ex = c.cur
                if ex is None or ex.req_done or ex.upgrade or not c.transport.is_reading():
                    c.last_active = now          # busy on the gateway's side: nothing counts against the client
                    if c.head_deadline:
                        c.head_deadline = max(c.head_deadline, now + lim.header_timeout)
                elif c.last_active < body_cut:
                    c.body_timed_out(ex)
            elif c.head_deadline:
                if c.head_deadline < now:
                    c.head_timed_out()
            elif c.last_active < idle_cut:
                c.close_if_idle()
        elif cls is Handover:                    # cleartext, no complete first bytes yet
            if c.last_active < fresh_cut:
                c.close_if_idle()
        elif cls is H2Server and c.streams:
            c.sweep_bodies(now, body_cut)
        elif not c.queue and c.last_active < idle_cut:
            c.close_if_idle()
