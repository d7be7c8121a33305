"""The HTTP/1.1 client side of a proxied exchange: one ``UpstreamProtocol`` per connection to a backend.

States of one connection (invariants the code keeps):
- *idle*: in its pool's idle stack, ``client is None``; bytes or EOF from the backend just close it.
- *bound*: ``client``/``ex`` set by ``bind()``; the request head is written at once, body bytes follow as the
  client protocol parses them. ``waiting_head`` is True until the response head arrives; the worker's sweep
  answers 504 if ``deadline`` passes first.
- A connection goes back to the pool only when the response was read completely, the request was sent
  completely and both sides allow keep-alive; anything else (parse error, early EOF, HEAD) closes it, so a
  connection with unknown framing state is never reused.

Response framing to the client: Content-Length is passed through; chunked or close-delimited upstream bodies
are re-chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0 clients. Hop-by-hop headers and those
named in ``Connection`` are dropped. Response bytes are collected per ``data_received`` and written with one
``writelines`` so head and body leave in one syscall when they arrive together.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from . import framing, responses
from .headers import PLAIN_CONNECTION_OPTIONS, RESPONSE_SPECIAL, connection_tokens, named_by_connection

if TYPE_CHECKING:
    from .exchange import Exchange
    from .http1 import ClientProtocol
    from .services.upstream_pool import UpstreamPool

NO_BODY_STATUS = frozenset((204, 304))

MODE_NONE, MODE_LENGTH, MODE_RECHUNK, MODE_CLOSE = 0, 1, 2, 3

# Status lines by (status, upstream reason): built and checked once (bounded: reasons come from backends).
STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
STATUS_LINES_MAX = 256

# A response head larger than this (fields as parsed, or raw bytes while the head is incomplete) is a 502.
MAX_RESPONSE_HEAD = 64 * 1024


class BadResponse(ValueError):
    """Raised from a parser callback: the response is refused (502 when no byte of it reached the client)."""


def _without(parts: list[bytes], names: set[bytes]) -> list[bytes]:
    """A serialized head (status line, then 4 pieces per header) without the headers in ``names``."""
    out = parts[:1]
    for i in range(1, len(parts), 4):
        if parts[i].lower() not in names:
            out += parts[i:i + 4]
    return out


class UpstreamProtocol(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "alive", "client", "ex", "reason", "headers", "mode",
                 "reused", "got_bytes", "client_paused", "reading_paused", "client_chunked", "out",
                 "waiting_head", "deadline", "idle_since", "head_bytes", "raw_head")

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.alive = False
        self.client: ClientProtocol | None = None
        self.ex: Exchange | None = None
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.mode = MODE_NONE
        self.reused = False
        self.got_bytes = False
        self.client_paused = False      # we paused the client's reading (request body back-pressure)
        self.reading_paused = False     # the client paused our reading (response back-pressure)
        self.client_chunked = False
        self.out: list[bytes] = []
        self.waiting_head = False
        self.head_bytes = 0
        self.raw_head = 0
        self.deadline = 0.0
        self.idle_since = 0.0

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
            if self.mode == MODE_CLOSE and ex.filter is not None:
                self._filter_tail(ex)
            self._flush(client)
            if self.mode == MODE_CLOSE:        # close-delimited body: EOF ends it
                client.response_finished(ex, chunked_end=self.client_chunked)
            else:
                client.abort(ex)
            return
        if self.reused and not self.got_bytes and not ex.req_has_body and not ex.retried:
            # A pooled connection the backend closed just as we reused it: safe to retry once, the backend
            # saw no complete request.
            ex.retried = True
            ex.upstream = None
            client.connect_upstream(ex)
            return
        client.upstream_failed(ex, 502, "Bad gateway: backend closed the connection")

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.transport.pause_reading()
            self.client_paused = True

    def resume_writing(self) -> None:
        if self.client_paused and self.client is not None:
            self.client_paused = False
            self.client.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            if self.waiting_head:
                self.raw_head += len(data)
            self.parser.feed_data(data)
            if self.waiting_head and self.raw_head > MAX_RESPONSE_HEAD + 4096:
                raise BadResponse("response head too large")
        except (httptools.HttpParserError, BadResponse):
            self.out = []
            client, ex = self.client, self.ex
            self.client = self.ex = None
            self.close()
            if client is not None:
                client.worker.waiting.discard(self)
                if ex.resp_started:
                    client.abort(ex)
                else:
                    client.upstream_failed(ex, 502, "Bad gateway: invalid response from backend")
            return
        if self.out and self.client is not None:
            self._flush(self.client)

    def _filter_tail(self, ex: Exchange) -> None:
        """The transformed body's last bytes, framed like the rest."""
        tail = ex.filter.finish()  # type: ignore[union-attr]
        ex.filter = None
        if tail:
            self.out += (b"%x\r\n" % len(tail), tail, b"\r\n") if self.client_chunked else (tail,)

    def _flush(self, client: ClientProtocol) -> None:
        out = self.out
        if out:
            self.out = []
            client.transport.writelines(out)

    # -- binding
    def bind(self, client: ClientProtocol, ex: Exchange, head: bytes, timeout: float) -> None:
        self.client = client
        self.ex = ex
        self.got_bytes = False
        self.waiting_head = True
        self.raw_head = 0
        self.deadline = client.worker.now + timeout    # the worker's coarse clock: ±0.5 s on a timeout
        client.worker.waiting.add(self)
        self.transport.write(head)

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
            client.upstream_failed(ex, 504, "Gateway timeout: backend did not answer in time")

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
        self.reason = b""
        self.headers = []
        self.head_bytes = 0

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_RESPONSE_HEAD:
            raise BadResponse("response head too large")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        client, ex = self.client, self.ex
        if client is None:
            return
        status = self.parser.get_status_code()
        version = self.parser.get_http_version()
        if status < 100 or status > 599 or (version != "1.1" and version != "1.0"):
            raise BadResponse("invalid status line")
        if 100 <= status < 200:
            if status != 101:
                # interim response (100 Continue, 103 Early Hints): relay it and keep waiting
                client.transport.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (
                    status, framing.clean_reason(self.reason, b""), b"".join(b"%s: %s\r\n" % h for h in self.headers)))
            return
        self.waiting_head = False
        client.worker.waiting.discard(self)
        retry = ex.retry
        if retry is not None and status in retry.statuses and retry.again(ex, True):
            self.client = self.ex = None       # this response is dropped unread, so is the connection
            self.close()
            ex.upstream = None
            client.retry_later(ex)
            return
        ex.resp_started = True
        ex.status = status
        service = ex.service
        if service.passive_failures:
            backend = ex.backend
            if status in service.passive_statuses:
                backend.plane.passive_failure(backend.idx, client.worker.now, service.passive_failures,
                                              service.passive_cooldown)
            else:
                backend.passive_success()
        headers = self.headers              # a new list per message: the response phase may edit it in place
        route = ex.route
        if route is not None and route.chain.responders:
            route.chain.on_response(ex, status, headers)
        line = STATUS_LINES.get((status, self.reason))
        if line is None:
            line = b"HTTP/1.1 %d %s\r\n" % (status, framing.clean_reason(self.reason, responses.reason(status)))
            if len(STATUS_LINES) < STATUS_LINES_MAX:
                STATUS_LINES[status, self.reason] = line
        parts = [line]
        append = parts.append
        has_cl = False
        up_chunked = False
        tokens = None
        for name, value in headers:          # one pass; ordinary headers cost one set lookup
            ln = name.lower()
            if ln not in RESPONSE_SPECIAL:
                parts += (name, b": ", value, b"\r\n")
            elif ln == b"content-length":
                has_cl = True
                if ex.filter is None:         # a transformed body's length is not known
                    parts += (name, b": ", value, b"\r\n")
            elif ln == b"transfer-encoding":
                # only exactly one "chunked", in HTTP/1.1: anything else has framing the client cannot be told
                # (the coding is hop-by-hop and dropped), so the response is refused before a byte goes out
                if up_chunked or not framing.is_chunked(value) or version != "1.1":
                    ex.resp_started = False
                    raise BadResponse("invalid Transfer-Encoding")
                up_chunked = True
            elif ln == b"connection" and value.lower() not in PLAIN_CONNECTION_OPTIONS:
                tokens = connection_tokens(value, tokens)
        drop = named_by_connection(tokens) if tokens is not None else None
        if drop is not None:                 # rare: Connection names more headers to strip
            parts = _without(parts, drop)
            append = parts.append
        if ex.set_cookie is not None:
            append(b"Set-Cookie: %s\r\n" % ex.set_cookie)
        self.client_chunked = False
        if ex.is_head or status in NO_BODY_STATUS:
            self.mode = MODE_NONE
            ex.filter = None
        elif has_cl and not up_chunked and ex.filter is None:
            self.mode = MODE_LENGTH
        else:
            self.mode = MODE_LENGTH if has_cl and not up_chunked else MODE_RECHUNK if up_chunked else MODE_CLOSE
            if ex.http11:
                self.client_chunked = True
                append(b"Transfer-Encoding: chunked\r\n")
            else:
                ex.keep_alive = False
        if not ex.keep_alive:
            append(b"Connection: close\r\n")
        elif not ex.http11:
            append(b"Connection: keep-alive\r\n")
        append(b"\r\n")
        self.out.append(b"".join(parts))
        if ex.is_head:
            # httptools cannot be told that a response to HEAD has no body, so finish here and do not reuse
            # this connection (its framing state is unknown).
            self._flush(client)
            self.client = self.ex = None
            self.close()
            client.response_finished(ex, chunked_end=False)

    def on_body(self, body: bytes) -> None:
        if self.client is None:
            return
        self.ex.resp_bytes += len(body)
        if self.ex.filter is not None:
            body = self.ex.filter.feed(body)
            if not body:
                return
        if self.client_chunked:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        client, ex = self.client, self.ex
        if client is None or not ex.resp_started:
            return  # interim (1xx) message, or detached
        keep = self.parser.should_keep_alive() and ex.req_done
        if ex.filter is not None:
            self._filter_tail(ex)
        if self.client_chunked:
            self.out.append(b"0\r\n\r\n")
        # Count the exchange and free its backend before the client can see the end of the response, so the
        # client's next request already sees its effects (breaker and passive-health state, in-flight sums).
        client._account(ex)
        client._release_backend(ex)
        self._flush(client)
        self.client = self.ex = None
        if self.client_paused:
            self.client_paused = False
            client.transport.resume_reading()
        if self.reading_paused:
            self.resume_reading()
        if keep:
            self.reused = True
            self.pool.release(self)
        else:
            self.close()
        client.response_finished(ex, chunked_end=False)
