"""The HTTP/1.1 upstream side of a proxied exchange: one ``UpstreamProtocol`` per connection to a backend.

States of one connection (invariants the code keeps):
- *idle*: in its pool's idle stack, ``client is None``; bytes or EOF from the backend just close it.
- *bound*: ``client``/``ex`` set by ``bind()``; the request head is written at once, body bytes follow as the
  client protocol parses them. ``waiting_head`` is True until the response head arrives; the worker's sweep
  answers 504 if ``deadline`` passes first.
- A connection goes back to the pool only when the response was read completely, the request was sent
  completely and both sides allow keep-alive; anything else (parse error, early EOF, HEAD) closes it, so a
  connection with unknown framing state is never reused.

The response goes to the exchange's ``Downstream`` (an HTTP/1.1 connection or an HTTP/2 stream) as status and
fields, then body pieces (de-chunked, through the exchange's body filter), then ``finish``; the client side frames
them for its protocol. Hop-by-hop fields and those named in ``Connection`` are dropped here. ``flush`` is called
once per ``data_received``, so head and body leave in one write when they arrive together. A response whose
status the retry path peeks at (``peeked``) is held, head and body (at most ``MAX_PEEK`` bytes), until it is
complete: then it is retried (dropped with its connection) or goes to the client as if it had just arrived.

Any client side uses ``proxy`` to send an exchange here and ``request_head`` for the head it sends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from ...shared.errors import BadUpstreamResponse, ConnectError, UpstreamTimeout
from .. import exchange, framing, proxy_protocol
from ..hop_headers import (
    PLAIN_CONNECTION_OPTIONS,
    RESPONSE_SPECIAL,
    connection_tokens,
    length_table,
    named_by_connection,
)

if TYPE_CHECKING:
    from ..exchange import Downstream, Exchange
    from ..services.upstream_pool import UpstreamPool

MODE_NONE, MODE_LENGTH, MODE_RECHUNK, MODE_CLOSE = 0, 1, 2, 3

# A response head larger than this (fields as parsed, or raw bytes while the head is incomplete) is a 502.
MAX_RESPONSE_HEAD = 64 * 1024
# A response the retry path peeks at (``Retry.peek_statuses``: ai-fallback's context-window errors) is read up to
# this many body bytes before it decides; a longer body is not what it looks for and goes to the client.
MAX_PEEK = 64 * 1024
_SPECIAL_LENGTHS = length_table(RESPONSE_SPECIAL)


def proxy(conn: Downstream, ex: Exchange) -> None:
    """Send ``ex`` to its backend over a pooled connection (idle, or a new one); ``conn.bind`` takes it."""
    pool = ex.backend.pool
    up = pool.get_idle()
    if up is not None:
        conn.bind(ex, up)
    else:
        conn.worker.loop.create_task(_connect_and_bind(conn, ex, pool))


async def _connect_and_bind(conn: Downstream, ex: Exchange, pool: UpstreamPool) -> None:
    """``pool`` is passed in: the client may leave meanwhile, which clears ``ex.backend``."""
    try:
        up = await pool.connect(ex.service.connect_timeout)
    except (TimeoutError, OSError) as e:
        return conn.fail(ex, exchange.connect_error(e))
    if not conn.current(ex):
        pool.release(up)
        return
    proxy_protocol.send(up.transport, pool.proxy_version, conn)
    conn.bind(ex, up)


def request_head(ex: Exchange, conn: Downstream) -> bytes:
    """The request head sent upstream (built late: the backend decides Host when pass_host_header=false)."""
    host = ex.host if ex.service.pass_host_header else ex.backend.host_header
    parts = [ex.method, b" ", ex.target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    parts += [b"%s: %s\r\n" % h for h in ex.headers]
    if ex.req_chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"X-Forwarded-For: %s\r\nX-Forwarded-Host: %s\r\n" % (ex.xff, ex.host))
    parts.append(conn.fwd_const)
    parts.append(b"\r\n")
    return b"".join(parts)


class UpstreamProtocol:
    __slots__ = ("pool", "transport", "parser", "alive", "client", "ex", "reason", "headers", "mode",
                 "reused", "got_bytes", "client_paused", "reading_paused", "waiting_head", "deadline", "idle_since",
                 "head_bytes", "raw_head", "peeked")

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.alive = False
        self.client: Downstream | None = None
        self.ex: Exchange | None = None
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.mode = MODE_NONE
        self.reused = False
        self.got_bytes = False
        self.client_paused = False      # we paused the client's reading (request body back-pressure)
        self.reading_paused = False     # the client paused our reading (response back-pressure)
        self.waiting_head = False
        self.head_bytes = 0
        self.raw_head = 0
        self.deadline = 0.0
        self.idle_since = 0.0
        self.peeked: tuple | None = None   # a response whose body the retry path reads before deciding

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.alive = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        client, ex = self.client, self.ex
        self.client = self.ex = None
        if client is None:
            self.pool.discard(self)
            return
        client.worker.waiting.discard(self)
        if ex.resp_started:
            if self.mode == MODE_CLOSE:        # close-delimited body: EOF ends it
                if ex.filter is not None:
                    self._filter_tail(client, ex)
                client.finish(ex)
            else:
                client.flush()
                client.abort(ex)
            return
        if self.reused and not self.got_bytes and not ex.req_has_body and not ex.retried:
            # A pooled connection the backend closed just as we reused it: safe to retry once, the backend
            # saw no complete request.
            ex.retried = True
            ex.upstream = None
            client.connect_upstream(ex)
            return
        client.fail(ex, ConnectError("Bad gateway: backend closed the connection"))

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.hold_body()
            self.client_paused = True

    def resume_writing(self) -> None:
        if self.client_paused and self.client is not None:
            self.client_paused = False
            self.client.release_body()

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        client = self.client
        try:
            if self.waiting_head:
                self.raw_head += len(data)
            self.parser.feed_data(data)
            if self.waiting_head and self.raw_head > MAX_RESPONSE_HEAD + 4096:
                raise BadUpstreamResponse("response head too large")
        except (httptools.HttpParserError, BadUpstreamResponse):
            client, ex = self.client, self.ex
            self.client = self.ex = None
            self.close()
            if client is not None:
                client.worker.waiting.discard(self)
                if ex.resp_started:
                    client.abort(ex)
                else:
                    client.fail(ex, BadUpstreamResponse("Bad gateway: invalid response from backend"))
            return
        if self.client is not None:            # still bound: what this read gave the client side goes out (a
            client.flush()                     # finished response was flushed by ``finish``)

    def _filter_tail(self, client: Downstream, ex: Exchange) -> None:
        """The transformed body's last bytes (``ex.filter`` set)."""
        tail = ex.filter.finish()
        ex.filter = None
        if tail:
            client.send_body(ex, tail)

    # -- binding
    def bind(self, client: Downstream, ex: Exchange, timeout: float) -> None:
        self.client = client
        self.ex = ex
        self.got_bytes = False
        self.waiting_head = True
        self.raw_head = 0
        self.deadline = client.worker.now + timeout    # the worker's coarse clock: ±0.5 s on a timeout
        client.worker.waiting.add(self)
        self.transport.write(request_head(ex, client))

    def abandon(self) -> None:
        """Leave the bound exchange and close: the request this connection carries will not be completed, so the
        connection is never reused (the client went away, passed a body limit or timed out)."""
        client = self.client
        self.client = self.ex = None
        if client is not None:
            client.worker.waiting.discard(self)
        self.close()

    def timed_out(self) -> None:
        """Called by the worker's sweep when no response head arrived before the deadline."""
        client, ex = self.client, self.ex
        self.client = self.ex = None
        self.close()
        if client is not None:
            client.fail(ex, UpstreamTimeout("Gateway timeout: backend did not answer in time"))

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.peeked = None
        self.reason = b""
        self.headers = []
        self.head_bytes = 0

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_RESPONSE_HEAD:
            raise BadUpstreamResponse("response head too large")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        client, ex = self.client, self.ex
        if client is None:
            return
        status = self.parser.get_status_code()
        version = self.parser.get_http_version()
        if status < 100 or status > 599 or (version != "1.1" and version != "1.0"):
            raise BadUpstreamResponse("invalid status line")
        if 100 <= status < 200:
            if status != 101:                  # interim response (100 Continue, 103 Early Hints): relay, go on
                client.send_interim(status, self.reason, self._fields(version)[0])
            return
        self.waiting_head = False
        client.worker.waiting.discard(self)
        fields, has_cl, up_chunked = self._fields(version)
        retry = ex.retry
        if retry is not None and status in retry.peek_statuses and retry.may_retry(ex):  # type: ignore[attr-defined]
            self.peeked = (status, fields, has_cl, up_chunked, bytearray())
            return
        self._head(client, ex, status, fields, has_cl, up_chunked)

    def _head(self, client: Downstream, ex: Exchange, status: int, fields: list[tuple[bytes, bytes]],
              has_cl: bool, up_chunked: bool) -> bool:
        """The response head goes to the client side (False: retried, or a HEAD response already finished)."""
        if not exchange.response_head(ex, client, status, fields):
            self._drop_for_retry(client, ex)
            return False
        if ex.is_head or status in exchange.NO_BODY_STATUS:
            self.mode = MODE_NONE
            ex.filter = None
        else:
            self.mode = MODE_LENGTH if has_cl and not up_chunked else MODE_RECHUNK if up_chunked else MODE_CLOSE
        client.send_head(ex, status, self.reason, fields, self.mode == MODE_LENGTH and ex.filter is None)
        if ex.is_head:
            # httptools cannot be told that a response to HEAD has no body, so finish here and do not reuse
            # this connection (its framing state is unknown).
            self.client = self.ex = None
            self.close()
            client.finish(ex)
            return False
        return True

    def _drop_for_retry(self, client: Downstream, ex: Exchange) -> None:
        """A retried response: dropped unread, so is the connection."""
        self.client = self.ex = None
        self.close()
        ex.upstream = None
        client.retry_later(ex)

    def _unpeek(self) -> bool:
        """A peeked response is not retried after all: its head, then what was read of its body, go on."""
        client, ex = self.client, self.ex
        status, fields, has_cl, up_chunked, body = self.peeked  # type: ignore[misc]
        self.peeked = None
        if not self._head(client, ex, status, fields, has_cl, up_chunked):  # type: ignore[arg-type]
            return False
        if body:
            self.on_body(bytes(body))
        return True

    def _fields(self, version: str) -> tuple[list[tuple[bytes, bytes]], bool, bool]:
        """The response's end-to-end fields (hop-by-hop ones and those ``Connection`` names dropped), whether it
        declared a Content-Length and whether it is chunked. Raises for a Transfer-Encoding other than exactly
        one "chunked" in HTTP/1.1: its framing could not be told to the client (the coding is hop-by-hop)."""
        fields = []
        has_cl = up_chunked = False
        tokens = None
        for field in self.headers:           # one pass; most fields are told ordinary by their name's length
            name = field[0]
            size = len(name)
            if size >= len(_SPECIAL_LENGTHS) or not _SPECIAL_LENGTHS[size]:
                fields.append(field)
                continue
            ln = name.lower()
            if ln not in RESPONSE_SPECIAL:
                fields.append(field)
            elif ln == b"content-length":
                has_cl = True
                fields.append(field)
            elif ln == b"transfer-encoding":
                if up_chunked or not framing.is_chunked(field[1]) or version != "1.1":
                    raise BadUpstreamResponse("invalid Transfer-Encoding")
                up_chunked = True
            elif ln == b"connection" and field[1].lower() not in PLAIN_CONNECTION_OPTIONS:
                tokens = connection_tokens(field[1], tokens)
        drop = named_by_connection(tokens) if tokens is not None else None
        if drop is not None:                 # rare: Connection names more fields to strip
            fields = [f for f in fields if f[0].lower() not in drop]
        return fields, has_cl, up_chunked

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is None:
            return
        peeked = self.peeked
        if peeked is not None:
            peeked[4].extend(body)
            if len(peeked[4]) > MAX_PEEK:
                self._unpeek()
            return
        ex.resp_bytes += len(body)
        if ex.filter is not None:
            body = ex.filter.feed(body)
            if not body:
                return
        self.client.send_body(ex, body)

    def on_message_complete(self) -> None:
        client, ex = self.client, self.ex
        if client is not None and self.peeked is not None:
            status, body = self.peeked[0], bytes(self.peeked[4])
            if ex.retry.retry_body(ex, status, body):  # type: ignore[union-attr]
                self.peeked = None
                return self._drop_for_retry(client, ex)
            if not self._unpeek():
                return
        if client is None or not ex.resp_started:
            return  # interim (1xx) message, or detached
        keep = self.parser.should_keep_alive() and ex.req_done
        if ex.filter is not None:
            self._filter_tail(client, ex)
        self.client = self.ex = None
        if self.client_paused:
            self.client_paused = False
            client.release_body()
        if self.reading_paused:
            self.resume_reading()
        if keep:
            self.reused = True
            self.pool.release(self)
        else:
            self.close()
        # ``finish`` counts the exchange and frees its backend before the client can see the end of the response,
        # so the client's next request already sees its effects (breaker and passive-health state, in-flight sums).
        client.finish(ex)
