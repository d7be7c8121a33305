"""What a rate limiter counts by (``key`` of ``rate-limit`` and ``rate-limit-redis``), as bytes per request.

``global``: one bucket for the middleware; ``router``: one per router using it; ``client-ip``: one per TCP
peer address; ``header:<Name>``: one per value of that request header (requests without it share one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...exchange import Exchange

KeyFunc = Callable[["Exchange"], bytes]


def key_func(spec: str) -> KeyFunc:
    if spec == "global":
        return lambda ex: b""
    if spec == "router":
        return lambda ex: ex.route.name.encode()  # type: ignore[union-attr]
    if spec == "client-ip":
        return lambda ex: ex.conn.client_ip.encode()
    header = spec.partition(":")[2].lower().encode()

    def by_header(ex: Exchange) -> bytes:
        for name, value in ex.headers:
            if name.lower() == header:
                return value
        return b""

    return by_header
