"""What a rate limiter counts by (``key`` of ``rate-limit`` and ``rate-limit-redis``), as bytes per request.

``global``: one bucket for the middleware; ``router``: one per router using it; ``client-ip``: one per TCP
peer address; ``header:<Name>``: one per value of that request header (requests without it share one).
``LimitKey(spec).of(ex)`` is the key of one request: a native class when compiled (``limit_key.pxd``), so the
limiter's call is a C call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...exchange import Exchange

GLOBAL, ROUTER, CLIENT_IP, HEADER = range(4)
_KINDS = {"global": GLOBAL, "router": ROUTER, "client-ip": CLIENT_IP}


class LimitKey:
    def __init__(self, spec: str) -> None:
        self.kind = _KINDS.get(spec, HEADER)
        self.header = spec.partition(":")[2].lower().encode() if self.kind == HEADER else b""

    def of(self, ex: Exchange) -> bytes:
        kind = self.kind
        if kind == CLIENT_IP:
            return ex.conn.client_ip.encode()
        if kind == ROUTER:
            return ex.route.name.encode()  # type: ignore[union-attr]
        if kind == GLOBAL:
            return b""
        header = self.header
        for name, value in ex.headers:
            if name.lower() == header:
                return value
        return b""
