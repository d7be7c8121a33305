"""The middleware chain of one router, built once per generation, and the base every middleware extends.

A middleware has two phases:
- ``on_request(ex)`` runs in router order before a backend is picked. It may edit the request (``ex.headers``,
  a list of ``(name, value)`` bytes pairs, ``ex.target``, ``ex.host``) and returns one of:
  ``None`` (go on), a ``Reply`` (answer now, without a backend), or an awaitable resolving to either (the
  exchange is suspended until it resolves; the event loop keeps serving everything else).
- ``on_response(ex, status, headers)`` runs in reverse router order when a response head is ready; ``headers``
  is the list of ``(name, value)`` pairs about to be sent (hop-by-hop fields already removed), edited in place.
  Setting ``ex.filter`` (a ``BodyFilter``) transforms the body; the proxy then drops Content-Length and frames
  the body itself.

Invariants:
- A ``Reply`` from middleware *i* goes through the response phase of middlewares ``0..i-1`` only (they ran
  their request phase; a CORS middleware listed before an auth middleware decorates the 401).
- A response the gateway writes itself for a routed request once the whole request phase ran (502/503/504,
  ``Chain.error``; an ``@internal`` service's answer, ``Chain.answer``) goes through the response phase of every
  middleware, like a backend's response: CORS headers are on a 502 and on ``whoami@internal``. Only those paths
  pay for it; the proxied fast path is unchanged.
- A ``Reply`` is recorded: ``ex.middleware`` names the middleware that answered, and the plane counts it by
  middleware and status code (``Plane.middleware_answered``; the metric
  ``a3s_gateway_middleware_rejections_total``).
- An empty chain is falsy, so the proxy's fast path skips it with one truth test; only middlewares that define
  ``on_response`` are called in the response phase.
- Middleware instances outlive requests (and reloads with an unchanged config, see ``middlewares.Builder``);
  per-request state lives on the ``Exchange``, never on the instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import responses
from .responses import Answer

if TYPE_CHECKING:
    from .exchange import Exchange
    from .process import Worker

JSON = b"application/json"
NO_BODY_STATUS = frozenset((204, 304))


class Reply:
    """A response a middleware answers with instead of the backend. Content-Length is added when sent."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []


def error_reply(status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None,
                **fields: object) -> Reply:
    """A JSON error ``{"error": message, **fields}`` (body built by ``responses``), with extra headers."""
    return Reply(status, responses.error_body(status, message, **fields),
                 [(b"Content-Type", JSON), *(headers or ())])


RequestResult = Reply | Awaitable[Reply | None] | None


class BodyFilter(Protocol):
    """Transforms a response body as it streams (compression). ``feed`` may return b"" to hold bytes back."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Middleware:
    """Base of every built-in middleware: built from validated params, once per (name, config)."""

    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        self.name = name
        self.worker = worker

    def on_request(self, ex: Exchange) -> RequestResult:
        return None

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        return None

    def close(self) -> None:
        """Release what the instance holds (connections); it may be used again afterwards and reopen them."""


_SILENT = Middleware.__dict__["on_response"]   # the class's own entry (compiled: its method descriptor)


def responds(m: Middleware) -> bool:
    return type(m).on_response is not _SILENT


class Chain:
    __slots__ = ("count", "indices", "middlewares", "responders")

    def __init__(self, middlewares: Sequence[Middleware], indices: Sequence[int] = (),
                 count: Callable[[int, int], None] | None = None) -> None:
        """``indices``: each middleware's plane index (``compiled["slots"]["middlewares"]``, -1: none);
        ``count(index, status)`` records a reply on the plane."""
        self.middlewares = tuple(middlewares)
        self.responders = tuple(m for m in reversed(self.middlewares) if responds(m))
        self.indices = tuple(indices) or (-1,) * len(self.middlewares)
        self.count = count

    def __bool__(self) -> bool:
        return bool(self.middlewares)

    def on_request(self, ex: Exchange, start: int = 0) -> Answer | Awaitable[Answer | None] | None:
        """None to proxy, the answer to send, or an awaitable of either (``start``: the middleware to go on from,
        after an asynchronous one)."""
        middlewares = self.middlewares
        for i in range(start, len(middlewares)):
            m = middlewares[i]
            result = m.on_request(ex)
            if result is None:
                continue
            if result.__class__ is Reply:
                return self.render(ex, result, i)  # type: ignore[arg-type]
            return self._resume(ex, result, i)  # type: ignore[arg-type]
        return None

    async def _resume(self, ex: Exchange, pending: Awaitable[Reply | None], i: int) -> Answer | None:
        reply = await pending
        if reply is not None:
            return self.render(ex, reply, i)
        rest = self.on_request(ex, i + 1)
        if rest is None or rest.__class__ is Answer:
            return rest  # type: ignore[return-value]
        return await rest  # type: ignore[misc]

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        for m in self.responders:
            m.on_response(ex, status, headers)

    def render(self, ex: Exchange, reply: Reply, index: int) -> Answer:
        """Middleware ``index``'s reply, after the response phase of the middlewares before it."""
        ex.middleware = self.middlewares[index].name
        mw = self.indices[index]
        if mw >= 0 and self.count is not None:
            self.count(mw, reply.status)
        before = self.middlewares[:index]
        return self._compose(ex, reply, [m for m in self.responders if m in before])

    def error(self, ex: Exchange, status: int, message: str | None = None) -> Answer:
        """A response the gateway writes itself (an upstream failure, no healthy backend) for a request whose
        request phase ran through the whole chain: it gets the response phase of every middleware."""
        return self.answer(ex, Reply(status, responses.error_body(status, message), [(b"Content-Type", JSON)]))

    def answer(self, ex: Exchange, reply: Reply) -> Answer:
        """``reply`` (an error, an internal service's answer) after the response phase of every middleware."""
        return self._compose(ex, reply, self.responders)

    def _compose(self, ex: Exchange, reply: Reply, responders: Sequence[Middleware]) -> Answer:
        headers = list(reply.headers)
        if reply.status not in NO_BODY_STATUS:
            headers.append((b"Content-Length", b"%d" % len(reply.body)))
        for m in responders:
            m.on_response(ex, reply.status, headers)
        body = reply.body
        body_filter = ex.filter
        if body_filter is not None:
            ex.filter = None
            body = body_filter.feed(body) + body_filter.finish()
            headers = [h for h in headers if h[0].lower() != b"content-length"]
            headers.append((b"Content-Length", b"%d" % len(body)))
        return Answer(reply.status, headers, body)


def header_value(headers: list[tuple[bytes, bytes]], lname: bytes) -> bytes | None:
    """The first value of the header whose lowercase name is ``lname``."""
    for name, value in headers:
        if name.lower() == lname:
            return value
    return None


def remove_headers(headers: list[tuple[bytes, bytes]], lnames: frozenset[bytes] | set[bytes]) -> None:
    """Delete, in place, every header whose lowercase name is in ``lnames`` (usually none is: then nothing is
    rebuilt)."""
    for name, _ in headers:
        if name.lower() in lnames:
            headers[:] = [h for h in headers if h[0].lower() not in lnames]
            return
