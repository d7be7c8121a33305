"""The HTTP/1.1 server side: one ``ClientProtocol`` per client connection, parsed with httptools.

Invariants:
- Requests on a connection are answered strictly in arrival order. ``queue`` holds the exchanges parsed so far;
  only ``queue[0]`` is *active* (may own an upstream connection or write to the client). Pipelined requests
  wait in the queue (reading pauses past ``MAX_PIPELINE``).
- Request bodies stream to the upstream as they are parsed; bytes that arrive before an upstream is bound are
  held in ``ex.pending`` (reading pauses past ``HIGH_WATER``). Response bodies stream back with write-buffer
  back-pressure on both sides.
- Every request gets exactly one response: proxied, answered by a middleware or the gateway (``ex.local``), or
  an error from ``responses``. After a malformed request the connection is closed, never reused.
- The protocol only translates: routing, the chain, backend picking and internal services are ``exchange``'s
  steps; the upstream side hands over a response as status and fields (``Downstream``), which are serialized
  here once. Response bytes are buffered in ``out`` and leave with one ``writelines`` per ``flush``.
- Identity headers (X-Real-IP, X-Forwarded-Proto/Host/Port) are always the gateway's own; a client's copies are
  dropped. X-Forwarded-For keeps the client's list and appends the peer address.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING

import httptools

from ..shared.errors import BadRequest, ClientError, HeaderTooLarge, UpstreamError, URITooLong
from . import exchange, framing, responses
from .exchange import NO_BODY_STATUS, Exchange, Fields
from .hop_headers import forwarded_const
from .http1_request import Refused, read_request
from .proxy import websocket
from .responses import STATUS_LINES, Answer, status_line
from .upstream import http1 as upstream_http1
from .upstream import http2 as upstream_http2

if TYPE_CHECKING:
    from .limits import Limits
    from .process import Worker
    from .upstream.http1 import UpstreamProtocol
    from .upstream.http2 import UpstreamStream

HIGH_WATER = 64 * 1024
LINGER_BYTES = 1 << 20
LINGER_SECONDS = 2.0

class ClientProtocol:
    """One client connection (the ``Downstream`` of its exchanges, one at a time)."""

    def __init__(self, worker: Worker, entrypoint: str, scheme: bytes, port: int) -> None:
        self.worker = worker
        self.limits = limits = worker.limits
        self.max_header_bytes = limits.max_header_bytes     # read per header: kept on the connection
        self.max_header_count = limits.max_header_count
        self.max_pipeline = limits.max_pipeline
        self.entrypoint = entrypoint
        self.scheme = scheme
        self.port = port
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_version=True)   # the version is checked here: any 1.x is 1.1
        self.url = b""
        self.headers: Fields = []
        self.header_bytes = 0
        self.queue: deque[Exchange] = deque()
        self.cur: Exchange | None = None
        self.out: list[bytes] = []
        self.client_ip = ""
        self.peer = b""
        self.fwd_const = b""
        self.alt_svc = worker.alt_svc.get(entrypoint)     # this entrypoint's HTTP/3 side (http3/__init__.py)
        self.closed = False
        self.last_active = worker.now
        # limits (worker/limits.py): the head in progress must complete by ``head_deadline`` (0: no head in
        # progress); ``unparsed`` counts bytes fed since the parser last completed an element (a head, a chunk-size
        # line, a body piece), bounding what llhttp/httptools hold for a line that never ends; ``halted``: a request
        # was refused, nothing after it is parsed. (Set here, not as class attributes: compiled, this is a native
        # class, whose fields a class attribute would shadow; see http1.pxd.)
        self.head_deadline = 0.0
        self.unparsed = 0
        self.halted = False
        self.write_paused = False
        self.xff_trusted = False
        self.lingering = 0.0                  # closing: when to stop reading and dropping (``close_lingering``)
        self.linger_left = LINGER_BYTES
        self.protocol = b"HTTP/1.0"           # the protocol of an exchange that is not HTTP/1.1 (access log, whoami)
        self.request_trailers: Fields | None = None   # a chunked request's trailers are not forwarded (httptools)
        self.client: tuple[str, int] | None = None    # the client a trusted PROXY protocol header named

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client_ip, self.peer, self.fwd_const = forwarded_const(transport, self.scheme, self.port, self.client)
        self.xff_trusted = self.worker.runtime.forwarded_for_trusted(self.entrypoint, self.client_ip)
        self.head_deadline = self.worker.now + self.limits.header_timeout
        self.worker.connections.add(self)

    @property
    def peername(self) -> tuple[str, int] | None:
        return self.client or self.transport.get_extra_info("peername")

    @property
    def sockname(self) -> tuple[str, int] | None:
        return self.transport.get_extra_info("sockname")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        for ex in self.queue:
            if ex.sink is not None:
                ex.sink.abort()
            exchange.account(ex, self)
            exchange.release_backend(ex)
            _drop_upstream(ex)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return self._drop(data)
        self.last_active = self.worker.now
        self.unparsed += len(data)
        try:
            self.parser.feed_data(data)
            if self.unparsed > self.limits.max_unparsed:
                raise HeaderTooLarge("line too long") if self.head_deadline else BadRequest("line too long")
        except httptools.HttpParserUpgrade as e:
            # Past an upgrade request nothing more is parsed: bytes after its head wait for the tunnel.
            self.transport.pause_reading()
            ex = self.cur
            rest = data[e.args[0]:]
            if rest and ex is not None and ex.upgrade:
                ex.pending = (ex.pending or []) + [rest]
        except (httptools.HttpParserError, ClientError) as e:
            error = e if isinstance(e, ClientError) else e.__context__     # raised in a parser callback
            if isinstance(error, ClientError):
                return self.fail_request(error.status)
            ex = self.cur
            if ex is not None and ex.req_done and not ex.keep_alive:
                # bytes after a request that ends the connection (Connection: close, HTTP/1.0, a refused one)
                # are never processed (RFC 9112 §9.6); that request's own response still goes out, then close
                self.transport.pause_reading()
                return
            # llhttp's reason ("Duplicate Content-Length"...) tells the client what was refused
            self.fail_request(400, None if error is not None else f"Bad request: {e}")

    def pause_writing(self) -> None:
        # a client that does not read its responses gets no more requests parsed (local answers would pile up
        # in the write buffer otherwise); proxied responses also stop reading their upstream
        self.write_paused = True
        self.transport.pause_reading()
        source = self._response_source()
        if source is not None:
            source.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        source = self._response_source()
        if source is not None:
            source.resume_reading()
        if not self.closed and self._may_read():
            self.transport.resume_reading()

    def _response_source(self) -> UpstreamProtocol | UpstreamStream | None:
        """What feeds the response being written: the active exchange's upstream connection or HTTP/2 stream."""
        if not self.queue:
            return None
        ex = self.queue[0]
        up = ex.upstream
        if up is not None and up.ex is ex:
            return up
        return ex.h2up

    def _may_read(self) -> bool:
        """No other reason to keep the client's reading paused (pipeline depth, request body back-pressure)."""
        if self.halted or len(self.queue) > self.max_pipeline:
            return False
        ex = self.cur
        if ex is not None and not ex.req_done:
            if ex.upgrade or ex.pending_bytes > HIGH_WATER:
                return False
            up = ex.upstream
            if up is not None and up.client_paused:
                return False
        return True

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self.halted:
            raise Refused
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.unparsed = 0
        if not self.head_deadline:
            self.head_deadline = self.worker.now + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_uri_bytes:
            raise URITooLong("URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_bytes or len(headers) > self.max_header_count:
            raise HeaderTooLarge("header fields too large")

    def on_headers_complete(self) -> None:
        p = self.parser
        self.head_deadline = 0.0
        self.unparsed = 0
        ex = Exchange()
        ex.method = p.get_method()
        ex.conn = self
        self.cur = ex
        self.queue.append(ex)
        version = p.get_http_version()
        ex.http11 = version == "1.1" or (version[:2] == "1." and version != "1.0")   # 1.x is 1.1 (RFC 9112 §2.3)
        try:
            if not ex.http11 and version != "1.0":
                raise Refused(505, "HTTP version not supported")
            ex.keep_alive = p.should_keep_alive() and not self.worker.draining
            ex.is_head = ex.method == b"HEAD"
            read_request(ex, self.headers, self.url, self.limits.max_body_bytes)
            ex.xff = ex.xff_in + b", " + self.peer if ex.xff_in is not None and self.xff_trusted else self.peer
        except Refused as e:
            return self._reject(ex, *e.args)
        if p.should_upgrade():
            ex.keep_alive = False
            if not websocket.is_websocket(self.headers):
                ex.local = responses.error_answer(501, "Only WebSocket upgrades are supported")
                return self._started(ex)
            ex.upgrade = True
        reply = exchange.route(ex, self, self.headers)
        if reply is not None:
            if reply.__class__ is Answer:
                ex.local = reply  # type: ignore[assignment]
            else:
                ex.suspended = True
                self.worker.loop.create_task(self._resume_chain(ex, reply))  # type: ignore[arg-type]
        self._started(ex)

    def expect_continue(self, ex: Exchange) -> None:
        """Ask for the body of an ``Expect: 100-continue`` request now that the request phase let it through (so
        body-limit or auth refuse before the client sends it); once, and only for the exchange being served."""
        if ex.expect_continue and not ex.req_done and self.current(ex):
            ex.expect_continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        ex.req_bytes += len(body)
        self.unparsed -= len(body)
        if ex.sink is not None:
            return ex.sink.feed(body)
        if ex.local is not None:
            return  # answered without a backend: the body is read and dropped
        if ex.req_limit and self._over_limit(ex):
            return
        if ex.req_chunked:
            body = b"%x\r\n%s\r\n" % (len(body), body)
        if ex.replay is not None:
            ex.retry.keep(ex, body)  # type: ignore[union-attr]
        up = ex.upstream
        if up is not None:
            if up.ex is ex:
                up.transport.write(body)
            return  # else: the response already finished (early response); drop the rest
        h2up = ex.h2up
        if h2up is not None:                   # an HTTP/2 backend gets the body raw
            return h2up.send_body(body[body.index(b"\r\n") + 2:-2] if ex.req_chunked else body)
        if ex.pending is None:
            ex.pending = [body]
        else:
            ex.pending.append(body)
        ex.pending_bytes += len(body)
        if ex.pending_bytes > HIGH_WATER:
            self.transport.pause_reading()

    def on_chunk_header(self) -> None:
        self.unparsed = 0

    on_chunk_complete = on_chunk_header

    def on_message_complete(self) -> None:
        ex = self.cur
        ex.req_done = True
        self.unparsed = 0
        if ex.sink is not None:
            return ex.sink.complete()
        if ex.req_chunked and ex.local is None:
            if ex.replay is not None:
                ex.retry.keep(ex, b"0\r\n\r\n")  # type: ignore[union-attr]
            up = ex.upstream
            if up is not None:
                if up.ex is ex:
                    up.transport.write(b"0\r\n\r\n")
            elif ex.h2up is not None:
                ex.h2up.end_body(None)
            elif ex.pending is None:
                ex.pending = [b"0\r\n\r\n"]
            else:
                ex.pending.append(b"0\r\n\r\n")
        elif ex.h2up is not None:
            ex.h2up.end_body(None)

    # -- exchange management
    def _started(self, ex: Exchange) -> None:
        if len(self.queue) == 1:
            self.start_exchange(ex)
        elif len(self.queue) > self.max_pipeline or self.write_paused:
            self.transport.pause_reading()

    def _reject(self, ex: Exchange, status: int, message: str) -> None:
        self.halted = True                 # what follows a refused request is never parsed or forwarded
        ex.keep_alive = False
        ex.local = responses.error_answer(status, message)
        self._started(ex)

    def start_exchange(self, ex: Exchange) -> None:
        if ex.suspended:
            return  # _resume_chain starts it
        if ex.local is not None:
            return self.answer(ex, ex.local)
        exchange.start(ex, self)

    async def _resume_chain(self, ex: Exchange, pending: Awaitable[Answer | None]) -> None:
        """The end of an async request phase: answer with its reply, or proxy, once the exchange is first."""
        try:
            reply = await pending
        except Exception:  # noqa: BLE001 — a middleware bug answers 500, never kills the connection
            reply = exchange.middleware_failed(ex)
        ex.suspended = False
        if reply is not None:
            ex.local = reply
            if ex.pending_bytes > HIGH_WATER and not self.closed:
                self.transport.resume_reading()
            ex.pending = None
            ex.pending_bytes = 0
        if self.current(ex):
            self.start_exchange(ex)

    # -- Downstream: what the exchange steps and the upstream sides call
    def current(self, ex: Exchange) -> bool:
        return not self.closed and bool(self.queue) and self.queue[0] is ex

    def connect_upstream(self, ex: Exchange) -> None:
        if ex.upgrade:
            return websocket.connect(self, ex)
        if ex.expect_continue:
            self.expect_continue(ex)
        if ex.backend.h2:
            return upstream_http2.open_stream(self, ex)
        upstream_http1.proxy(self, ex)

    def bind(self, ex: Exchange, up: UpstreamProtocol) -> None:
        """An HTTP/1.1 upstream connection takes the exchange: the head, then the body read so far."""
        ex.upstream = up
        ex.t_up = perf_counter()
        up.bind(self, ex, ex.service.response_timeout)
        if ex.attempts and ex.replay:
            up.transport.write(bytes(ex.replay))  # a retry: the whole body so far (pending is its tail)
            self.body_sent(ex)
        elif ex.pending is not None:
            up.transport.writelines(ex.pending)
            self.body_sent(ex)

    def bind_h2(self, ex: Exchange, us: UpstreamStream) -> None:
        ex.h2up = us
        ex.t_up = perf_counter()

    def body_to_send(self, ex: Exchange) -> list[bytes] | None:
        """The body so far for an HTTP/2 backend: a chunked request's pieces unframed (they are kept framed for
        HTTP/1.1 backends, retries included)."""
        body = [bytes(ex.replay)] if ex.attempts and ex.replay else ex.pending
        if body and ex.req_chunked:
            return framing.unchunked(b"".join(body))
        return body

    def body_sent(self, ex: Exchange) -> None:
        ex.pending = None
        if ex.pending_bytes > HIGH_WATER and not self.closed:
            self.transport.resume_reading()
        ex.pending_bytes = 0

    def send_interim(self, status: int, reason: bytes, fields: Fields) -> None:
        self.out.append(b"".join([status_line(status, reason), *[b"%s: %s\r\n" % f for f in fields], b"\r\n"]))

    def send_head(self, ex: Exchange, status: int, reason: bytes, fields: Fields, length_known: bool,
                  end: bool = False) -> None:
        """Serialize the head once; a body of unknown length is chunk-framed for HTTP/1.1 clients and
        close-delimited for HTTP/1.0 ones."""
        parts = [STATUS_LINES.get((status, reason)) or status_line(status, reason)]
        for name, value in fields:
            parts += (name, b": ", value, b"\r\n")
        if not length_known and not ex.is_head and status not in NO_BODY_STATUS:
            if ex.http11:
                ex.resp_chunked = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                ex.keep_alive = False
        if not ex.keep_alive:
            parts.append(b"Connection: close\r\n\r\n")
        elif not ex.http11:
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        self.out.append(b"".join(parts))

    def send_body(self, ex: Exchange, data: bytes) -> None:
        if ex.resp_chunked:
            self.out += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self.out.append(data)

    def flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            if not self.closed:
                self.transport.writelines(out)

    def finish(self, ex: Exchange, trailers: Fields | None = None) -> None:
        """The response is complete; an HTTP/2 backend's trailers go in the last chunk of a chunked body (with a
        length, HTTP/1.1 has nowhere to put them: dropped)."""
        exchange.account(ex, self)             # before the client sees the end (see UpstreamProtocol)
        backend = ex.backend
        if backend is not None:                # exchange.release_backend, inline: every request passes here
            ex.backend = None
            backend.release()
        if self.closed:
            self.out = []
            return
        if ex.resp_chunked:
            self.out.append(b"0\r\n\r\n" if not trailers else
                            b"".join([b"0\r\n", *[b"%s: %s\r\n" % f for f in trailers], b"\r\n"]))
        self.flush()
        queue = self.queue
        if queue and queue[0] is ex:
            queue.popleft()
        if not ex.keep_alive or (self.worker.draining and not queue):
            if ex.req_done and not self.halted:
                self.closed = True
                self.transport.close()
            else:
                self.close_lingering()         # the client may still be sending (a body, refused requests)
            return
        if queue:
            if len(queue) == self.max_pipeline and not self.write_paused:
                self.transport.resume_reading()
            self.start_exchange(queue[0])

    def answer(self, ex: Exchange, answer: Answer) -> None:
        if ex.expect_continue and not ex.req_done:
            ex.keep_alive = False              # the body may never come: nothing after it can be framed
        ex.resp_started = True
        ex.status = answer.status
        ex.local = answer
        ex.resp_bytes = 0 if ex.is_head else len(answer.body)
        self.out.append(responses.compose(answer.status, answer.fields, answer.body, close=not ex.keep_alive,
                                          head=ex.is_head, keep_alive_header=not ex.http11 and ex.keep_alive))
        self.finish(ex)

    def fail(self, ex: Exchange, error: UpstreamError) -> None:
        reached = ex.upstream is not None or ex.h2up is not None   # the request (or part of it) went out
        ex.upstream = None
        ex.h2up = None
        if ex.resp_started:                    # an HTTP/2 backend reset its stream mid-response
            exchange.passive_failure(ex, self.worker.now)
            return self.abort(ex)
        if self.closed:
            exchange.passive_failure(ex, self.worker.now)
            exchange.release_backend(ex)
            return
        if exchange.failed(ex, self, error, reached):
            return self.retry_later(ex)
        if not ex.req_done:
            ex.keep_alive = False      # the rest of the request body would be misread as a new request
        self.answer(ex, exchange.error_for(ex, error.status, error.message))

    def abort(self, ex: Exchange) -> None:
        """The backend died mid-response: the client can only learn it from a reset connection."""
        exchange.account(ex, self)
        exchange.release_backend(ex)
        self.out = []
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def retry_later(self, ex: Exchange) -> None:
        exchange.retry_later(ex, self)

    def want_body(self, ex: Exchange) -> None:
        self.transport.resume_reading()        # reading may have paused at HIGH_WATER
        self.expect_continue(ex)

    def hold_body(self) -> None:
        self.transport.pause_reading()

    def release_body(self) -> None:
        self.transport.resume_reading()

    # -- limits
    def _over_limit(self, ex: Exchange) -> bool:
        """Check the streamed request body (``ex.req_bytes``, counted in on_body) against ``ex.req_limit``;
        past it, answer 413 and stop forwarding."""
        if ex.req_bytes <= ex.req_limit:
            return False
        ex.local = reply = responses.too_large(ex.req_limit)
        ex.req_limit = 0
        ex.keep_alive = False
        ex.pending = None
        _drop_upstream(ex)              # abort the upstream request: it never gets the rest of the body
        if ex.resp_started:
            self.abort(ex)
        elif self.queue and self.queue[0] is ex and not ex.suspended:
            exchange.release_backend(ex)
            self.answer(ex, reply)
        return True

    def sweep(self, now: float, limits: Limits) -> None:
        """The worker's sweep (every 0.5 s): the header timeout, the idle keep-alive timeout and the body timeout.
        Time the gateway holds the client back (an exchange in flight, reading paused) never counts."""
        if self.closed:
            if self.lingering and self.lingering < now:
                self.transport.close()
            return
        if self.queue:
            ex = self.cur
            if ex is None or ex.req_done or ex.upgrade or not self.transport.is_reading():
                self.last_active = now          # busy on the gateway's side: nothing counts against the client
                if self.head_deadline:
                    self.head_deadline = max(self.head_deadline, now + limits.header_timeout)
            elif self.last_active < now - limits.body_timeout:
                self.body_timed_out(ex)
        elif self.head_deadline:
            if self.head_deadline < now:
                self.head_timed_out()
        elif self.last_active < now - limits.idle_timeout:
            self.close_if_idle()

    def head_timed_out(self) -> None:
        """The request head did not complete within the header timeout (slowloris)."""
        if self.url or self.headers:           # a request was started: tell the client why
            self.transport.write(responses.error(408))
            return self.close_lingering()
        self.closed = True
        self.transport.close()

    def body_timed_out(self, ex: Exchange) -> None:
        """No request body bytes for the body timeout while the gateway was reading."""
        if ex.resp_started or self.queue[0] is not ex:
            return self.abort(ex)
        _drop_upstream(ex)              # the upstream request is incomplete: never reuse that connection
        self.fail_request(408)

    def fail_request(self, status: int, message: str | None = None) -> None:
        """A malformed request: answer it (unless a response is already on the wire) and close."""
        if self.closed:
            return
        if not (self.queue and self.queue[0].resp_started):
            self.transport.write(responses.error(status, message))
        self.close_lingering()

    def close_lingering(self) -> None:
        """Close after an answer that may leave request bytes unsent or unread (a refused head, a response before
        the body was read): half-close, then read and drop up to ``LINGER_BYTES`` for ``LINGER_SECONDS`` before
        closing, as nginx's lingering close does; closing with unread bytes makes the kernel send a reset, which can
        destroy the answer before the client reads it."""
        self.closed = True
        self.lingering = self.worker.now + LINGER_SECONDS
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()

    def _drop(self, data: bytes) -> None:
        self.linger_left -= len(data)
        if self.linger_left < 0:
            self.transport.close()

    def close_if_idle(self) -> bool:
        if not self.queue and not self.closed:
            self.closed = True
            self.transport.close()
            return True
        return False


def _drop_upstream(ex: Exchange) -> None:
    """Abandon what carries ``ex``'s request to its backend (an HTTP/1.1 connection, never reused then, or an
    HTTP/2 stream, cancelled): the request will not be completed."""
    up = ex.upstream
    if up is not None and up.ex is ex:
        up.abandon()
    ex.upstream = None
    h2up = ex.h2up
    if h2up is not None:
        ex.h2up = None
        h2up.cancel()
