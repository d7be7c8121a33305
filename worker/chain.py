"""The middleware chain of one router, built once per generation.

A middleware has two phases:
- ``on_request(ex)`` runs in router order before a backend is picked. It may edit the request (``ex.headers``,
  a list of ``(name, value)`` bytes pairs, and ``ex.target``) or answer it by returning a complete response
  (``bytes``), which ends the exchange without touching a backend.
- ``on_response(ex, status, parts)`` runs in reverse order when the backend's response head arrives; ``parts``
  is the serialized head being built (status line, then ``name: value\\r\\n`` pieces) and a middleware appends
  its own header lines to it.

An empty chain is falsy, so the proxy's fast path skips it with one truth test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from .http1 import Exchange


class Middleware(Protocol):
    name: str

    def on_request(self, ex: Exchange) -> bytes | None: ...

    def on_response(self, ex: Exchange, status: int, parts: list[bytes]) -> None: ...


class Chain:
    __slots__ = ("middlewares", "reversed")

    def __init__(self, middlewares: Sequence[Middleware]) -> None:
        self.middlewares = tuple(middlewares)
        self.reversed = tuple(reversed(self.middlewares))

    def __bool__(self) -> bool:
        return bool(self.middlewares)

    def on_request(self, ex: Exchange) -> bytes | None:
        for m in self.middlewares:
            reply = m.on_request(ex)
            if reply is not None:
                return reply
        return None

    def on_response(self, ex: Exchange, status: int, parts: list[bytes]) -> None:
        for m in self.reversed:
            m.on_response(ex, status, parts)
