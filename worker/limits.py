"""Resource limits of HTTP entrypoints (the ``[limits]`` config table) and their enforcement off the hot path.

- ``Limits``: the values of one generation, read by ``ClientProtocol`` when a connection starts (a reload applies
  to new connections; timeouts are read by the sweep, so they apply to every connection at once).
- ``ConnectionSet``: the worker's set of client connections, counted per entrypoint so the accept path can
  refuse a connection past ``max_connections`` in O(1). Protocol switches (``Handover`` → HTTP/1.1 or HTTP/2,
  HTTP/1.1 → WebSocket tunnel) remove one object and add the next, so the count follows the connection.
- The timeouts are enforced by the worker's periodic sweep (every 0.5 s), which calls ``sweep(now, limits)`` on
  every connection; each protocol class sweeps itself: the header timeout (a request head, or a fresh
  connection's first bytes, not complete in time: 408 and close; a connection that sent nothing is closed
  silently; ``http1.ClientProtocol``, ``handover.Handover``), the idle keep-alive timeout (every class), and the
  body timeout (no request body bytes for that long while the gateway is reading: 408, or a reset when a
  response started; on HTTP/2 per stream, ``http2.H2Server``, gRPC streams aside).
  Time during which the gateway itself holds the client back (an exchange in flight, reading paused for
  back-pressure) never counts against the client.

Invariant: no limit is checked per byte or per header outside the loops that already run (``http1`` counts
header bytes and fields as it collects them); the timeouts cost nothing per request.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from . import responses

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
    "model_inspect_bytes": 65536,
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


class Connection(Protocol):
    """What the worker's ``connections`` hold: every client-facing protocol object (HTTP/1.1, HTTP/2, the first-bytes
    sniffer, WebSocket and TCP tunnels)."""

    entrypoint: str
    last_active: float

    def sweep(self, now: float, limits: Limits) -> None:
        """Enforce this connection's timeouts (called every 0.5 s)."""

    def close_if_idle(self) -> bool:
        """Close now if nothing is in flight (drain, removed entrypoint); whether it closed."""


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
        transport.write(responses.error(503, "Too many connections"))  # type: ignore[attr-defined]
        transport.close()
