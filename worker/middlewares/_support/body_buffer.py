"""Whole-request-body buffering for the few middlewares that must read a body before deciding
(``channel-webhook`` verifies a signature over it, ``privacy-router`` classifies it).

Everything else in the gateway streams request bodies. A middleware that needs the body returns
``read_body(ex, max_bytes, timeout)`` (awaited in its async request phase): it installs a ``BodySink`` on the
exchange, which ``http1.ClientProtocol.on_body`` feeds instead of the upstream / ``ex.pending`` path and
``on_message_complete`` completes. Reading never pauses for the sink (its bound is ``max_bytes``; beyond it the
sink stops storing and the middleware answers 413), so a body larger than the proxy's HIGH_WATER mark cannot
deadlock.

After the decision the middleware calls ``forward_body(ex, body)`` to hand the (possibly rewritten) body to the
proxy: it becomes ``ex.pending`` with an exact Content-Length, and chunked framing is dropped.

Invariants: the sink is removed before ``read_body`` returns; a connection that goes away wakes the waiter
(``abort``), and a client that stalls gets 408 after ``timeout``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ... import framing
from ...chain import Reply, error_reply

if TYPE_CHECKING:
    from ...exchange import Exchange


class BodySink:
    """``prefix=False``: the whole body up to ``max_bytes`` (``over`` past it). ``prefix=True``: stop waiting
    once ``max_bytes`` arrived (``over``) but keep every byte fed until the sink is removed."""

    __slots__ = ("buf", "done", "max_bytes", "over", "prefix")

    def __init__(self, max_bytes: int, start: bytes = b"", prefix: bool = False) -> None:
        self.buf = bytearray(start)
        self.max_bytes = max_bytes
        self.prefix = prefix
        self.over = len(self.buf) > max_bytes
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.over:
            self.done.set_result(None)

    def feed(self, data: bytes) -> None:
        if self.over and not self.prefix:
            return
        self.buf += data
        if len(self.buf) > self.max_bytes and not self.over:
            self.over = True
            if not self.prefix:
                self.buf = bytearray()
            if not self.done.done():
                self.done.set_result(None)        # answer 413 / decide now, do not wait for the rest

    def complete(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def abort(self) -> None:
        """The client went away: wake the waiter (its reply is never written, the connection is closed)."""
        self.over = True
        self.complete()


async def read_prefix(ex: Exchange, max_bytes: int, timeout: float = 30.0) -> tuple[bytes, bool] | Reply:
    """(the body's first bytes — all of it when the second item is True, else at least ``max_bytes``), or 408.
    A partial prefix must go back with ``restore_prefix`` so the rest of the body streams after it."""
    return await read_body(ex, max_bytes, timeout, prefix=True)  # type: ignore[return-value]


def restore_prefix(ex: Exchange, data: bytes) -> None:
    """Put a partially read body's first bytes back in front of whatever arrived since (framing unchanged)."""
    if ex.req_chunked and data:
        data = b"%x\r\n%s\r\n" % (len(data), data)
    ex.pending = [data, *(ex.pending or ())] if data else ex.pending
    ex.pending_bytes += len(data)


async def read_body(ex: Exchange, max_bytes: int, timeout: float = 30.0,
                    prefix: bool = False) -> bytes | Reply | tuple[bytes, bool]:
    """The whole request body, or the error reply (413 past ``max_bytes``, 408 on a stalled client)."""
    start = b"".join(ex.pending or ())
    if ex.req_chunked and start:
        start = b"".join(framing.unchunked(start))   # the gateway's own chunk framing of ``ex.pending``
    ex.pending = None
    ex.pending_bytes = 0
    sink = BodySink(max_bytes, start, prefix)
    if ex.req_done or not ex.req_has_body:
        sink.complete()
    else:
        ex.sink = sink
        ex.conn.want_body(ex)              # resumes reading, asks an ``Expect: 100-continue`` client for it
    try:
        if not sink.done.done():         # a body already read costs no timer task
            await asyncio.wait_for(asyncio.shield(sink.done), timeout)
    except TimeoutError:
        ex.keep_alive = False
        return error_reply(408, "Request body not received in time")
    finally:
        ex.sink = None
    if prefix:
        return bytes(sink.buf), not sink.over or ex.req_done or not ex.req_has_body
    if sink.over:
        ex.keep_alive = False           # the rest of the body is never read as a request
        return error_reply(413, "Request body too large", max_bytes=max_bytes)
    return bytes(sink.buf)


def forward_body(ex: Exchange, body: bytes, content_type: bytes | None = None) -> None:
    """Proxy ``body`` (exact Content-Length, no chunking) instead of what the client sent."""
    drop = {b"content-length", b"transfer-encoding"}
    if content_type is not None:
        drop.add(b"content-type")
    ex.headers = [h for h in ex.headers if h[0].lower() not in drop]
    if content_type is not None:
        ex.headers.append((b"Content-Type", content_type))
    ex.headers.append((b"Content-Length", b"%d" % len(body)))
    ex.req_chunked = False
    ex.req_has_body = bool(body)
    ex.pending = [body] if body else None
    ex.pending_bytes = len(body)
    if ex.replay is not None:
        ex.replay = bytearray(body)
