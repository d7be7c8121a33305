"""``Stream``: one request on an HTTP/2 connection, the ``Downstream`` of its exchange.

The upstream side hands the stream its response as status and fields (HEADERS are built from them directly), body
pieces (DATA, through the connection's outbox) and the end (with trailers from HTTP/2 backends). Towards
backends:
- HTTP/1.1 backends (``http://``, ``https://``) go through ``upstream.http1`` and its pool; the request body is
  chunk-framed unless the request declared a content-length.
- HTTP/2 backends (``h2c://``, ``https://`` with ``http_version = "2"``, and gRPC to ``https://``) go through
  ``upstream.http2`` stream by stream, with trailers passed through.

Invariants:
- Request bytes are acknowledged to the client only after they were handed to the upstream, and not while the
  upstream pushes back (``hold``).
- Every stream gets exactly one response or one RST_STREAM. gRPC requests that fail in the gateway get a gRPC
  answer (HTTP 200, ``grpc-status``), see ``proxy/grpc_status.py``.
- A failed attempt counts for passive health and, under the ``retry`` middleware, the stream is sent again
  (``exchange.retry_later``), replaying the body the middleware kept — as over HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from ...shared.errors import UpstreamError
from .. import exchange, responses
from ..exchange import NO_BODY_STATUS, Exchange, Fields
from ..proxy import grpc_status, websocket_h2
from ..responses import Answer
from ..upstream import http1 as upstream_http1
from ..upstream import http2 as upstream_http2
from .endpoint import header_value
from .fields import read_request

if TYPE_CHECKING:
    from ..process import Worker
    from ..upstream.http1 import UpstreamProtocol
    from ..upstream.http2 import UpstreamStream
    from .server import H2Server


_BODY_METHODS = frozenset((b"POST", b"PUT", b"PATCH"))


class Stream:
    """One request on an HTTP/2 connection.

    It is also the ``conn`` that ``Observability.finish`` and the middlewares read (client_ip, entrypoint,
    ``protocol``), so a stream is counted, logged and traced like an HTTP/1.1 request."""

    __slots__ = ("server", "worker", "entrypoint", "client_ip", "peer", "scheme", "port", "fwd_const", "alt_svc", "id",
                 "ex", "grpc", "length", "head_sent", "hold", "held", "unacked", "request_trailers", "body_mark",
                 "body_since")
    protocol = b"HTTP/2.0"                    # what the access log and whoami say

    def __init__(self, server: H2Server, stream_id: int, ex: Exchange, grpc_request: bool, length: int = -1) -> None:
        self.server = server
        self.worker: Worker = server.worker
        self.entrypoint = server.entrypoint
        self.client_ip = server.client_ip
        self.peer = server.peer
        self.scheme = server.scheme
        self.port = server.port
        self.fwd_const = server.fwd_const
        self.alt_svc = server.alt_svc
        self.id = stream_id
        self.ex = ex
        self.grpc = grpc_request
        self.length = length                   # the declared content-length, checked here (-1: none)
        self.head_sent = False
        self.hold = False                      # the upstream pushes back: do not open the client's window
        self.held = 0
        self.unacked = 0                       # request bytes buffered before an upstream was bound
        self.request_trailers: Fields | None = None
        self.body_mark = -1                    # the body bytes the last sweep saw, and since when (sweep_bodies)
        self.body_since = 0.0

    @property
    def peername(self) -> Any:
        return self.server.client or self.server.transport.get_extra_info("peername")

    @property
    def sockname(self) -> Any:
        return self.server.transport.get_extra_info("sockname")

    # -- Downstream: towards the backend
    def current(self, ex: Exchange) -> bool:
        return self.server.streams.get(self.id) is self

    def connect_upstream(self, ex: Exchange) -> None:
        if ex.upgrade:
            return websocket_h2.connect(self, ex)
        backend = ex.backend
        if backend.h2 or (self.grpc and backend.scheme == "https"):
            upstream_http2.open_stream(self, ex)
        else:
            upstream_http1.proxy(self, ex)

    def bind(self, ex: Exchange, up: UpstreamProtocol) -> None:
        """An HTTP/1.1 upstream connection takes the stream: the head, then the body read so far, chunk-framed
        unless the request declared its length."""
        ex.upstream = up
        ex.t_up = perf_counter()
        self.server.outbox(self.id).source = up
        names = [name.lower() for name, _ in ex.headers]   # middlewares may add fields in any case
        if b"te" in names:     # hop-by-hop (RFC 9110 §7.6.1): kept for HTTP/2 backends (gRPC needs it), not here
            ex.headers = [field for field in ex.headers if field[0].lower() != b"te"]
        ex.req_chunked = ex.req_has_body and b"content-length" not in names
        if not ex.req_has_body and ex.method in _BODY_METHODS and b"content-length" not in names:
            ex.headers = [*ex.headers, (b"content-length", b"0")]    # what an HTTP/1.1 client would have sent
        up.bind(self, ex, ex.service.response_timeout)
        body = self.body_to_send(ex)
        if body is not None or (ex.req_done and ex.req_chunked):
            body = body or []
            if ex.req_chunked:
                body = [b"%x\r\n%s\r\n" % (len(d), d) for d in body]
                if ex.req_done:
                    body.append(b"0\r\n\r\n")
            up.transport.writelines(body)
            self.body_sent(ex)
            self.server.flush()

    def bind_h2(self, ex: Exchange, us: UpstreamStream) -> None:
        ex.h2up = us
        self.server.outbox(self.id).source = us

    def body_to_send(self, ex: Exchange) -> list[bytes] | None:
        """What a newly bound upstream gets of the request body: the bytes that arrived before it, or on a retry
        the whole body so far (kept raw by the retry middleware; ``pending`` is then its tail)."""
        if ex.attempts and ex.replay is not None:
            return [bytes(ex.replay)] if ex.replay else None
        return ex.pending

    def body_sent(self, ex: Exchange) -> None:
        """The body held before the upstream was bound went out: the client may send more."""
        ex.pending = None
        unacked, self.unacked = self.unacked, 0
        self.ack(unacked)

    def want_body(self, ex: Exchange) -> None:
        if self.hold:
            self.release_body()

    def hold_body(self) -> None:
        self.hold = True

    def release_body(self) -> None:
        self.hold = False
        held, self.held = self.held, 0
        self.server.ack(self.id, held)
        self.server.flush()

    def fail(self, ex: Exchange, error: UpstreamError) -> None:
        reached = ex.upstream is not None or ex.h2up is not None    # the request (or part of it) went out
        ex.upstream = None
        ex.h2up = None
        if not self.current(ex):               # the client reset the stream meanwhile
            exchange.passive_failure(ex, self.worker.now)
            return exchange.release_backend(ex)
        if exchange.failed(ex, self, error, reached):
            return self.retry_later(ex)
        if self.hold:
            self.release_body()                # the failed upstream's push-back ends with it
        exchange.release_backend(ex)
        self.answer_error(error.status, error.message)

    def retry_later(self, ex: Exchange) -> None:
        """Also called for a retried status: that upstream's push-back ends with it."""
        if self.hold:
            self.release_body()
        exchange.retry_later(ex, self)

    # -- Downstream: the response
    def send_interim(self, status: int, reason: bytes, fields: Fields) -> None:
        """A 1xx response (100 Continue, 103 Early Hints): an informational HEADERS block (RFC 9113 §8.1)."""
        if not self.head_sent:
            self.server.send_headers(self.id, _h2_fields(status, fields))

    def send_head(self, ex: Exchange, status: int, reason: bytes, fields: Fields, length_known: bool,
                  end: bool = False) -> None:
        self.head_sent = True
        ex.resp_started = True
        ex.status = status
        headers = _h2_fields(status, fields)
        if end:
            self.note_grpc_status(headers)
        if not self.server.send_headers(self.id, headers, end) or end:
            self.server.drop_outbox(self.id)

    def send_body(self, ex: Exchange, data: bytes) -> None:
        self.server.send_data(self.id, data)

    def flush(self) -> None:
        self.server.flush()

    def finish(self, ex: Exchange, trailers: Fields | None = None) -> None:
        if trailers:
            self.note_grpc_status(trailers)
        exchange.account(ex, self)
        exchange.release_backend(ex)
        self.server.end_stream(self.id, trailers)
        self.server.stream_done(self)

    def answer(self, ex: Exchange, answer: Answer) -> None:
        """Answer with a response the gateway built (an error, a middleware's reply, an internal service)."""
        ex.local = answer                      # counted and logged as the gateway's own answer, as for HTTP/1.1
        if self.grpc:
            return self.answer_grpc(*grpc_status.from_http_status(answer.status))
        no_body = ex.is_head or answer.status in NO_BODY_STATUS or not answer.body
        self.send_head(ex, answer.status, b"", answer.fields, True)
        if not no_body:
            ex.resp_bytes = len(answer.body)
            self.server.send_data(self.id, answer.body)
        self.finish(ex)

    def answer_error(self, status: int, message: str | None = None) -> None:
        if self.head_sent:                     # too late for a status: the client learns it from a reset
            return self.abort(self.ex)
        self.answer(self.ex, exchange.error_for(self.ex, status, message))

    def answer_grpc(self, code: int, message: str) -> None:
        self.send_head(self.ex, 200, b"", grpc_status.trailers_only(code, message), True, end=True)
        exchange.account(self.ex, self)
        exchange.release_backend(self.ex)
        self.server.stream_done(self)

    def abort(self, ex: Exchange) -> None:
        exchange.account(ex, self)
        exchange.release_backend(ex)
        self.server.reset(self.id, ErrorCodes.INTERNAL_ERROR)
        self.server.stream_done(self)

    def note_grpc_status(self, headers: Fields) -> None:
        """A gRPC call's outcome is its ``grpc-status`` (the HTTP status is 200 either way): kept for its span."""
        if self.grpc and self.ex.span is not None:
            code = header_value(headers, b"grpc-status")
            if code is not None and code.isdigit():
                self.ex.grpc_status = int(code)

    # -- the request body (events from the client)
    def request_data(self, data: bytes, flow_length: int) -> None:
        ex = self.ex
        if not data:       # an empty DATA frame (padding only, or END_STREAM alone): chunk-framed it would be
            self.ack(flow_length)      # "0\r\n\r\n", the end of the body, and the real end a stray next request
            return
        ex.req_bytes += len(data)
        if 0 <= self.length < ex.req_bytes:   # more DATA than declared: malformed (RFC 9113 §8.1.1)
            return self._malformed(flow_length)
        if ex.req_limit and ex.req_bytes > ex.req_limit:
            return self._too_large(flow_length)
        if ex.sink is not None:        # a middleware reads the whole body first (middlewares/_support/body_buffer.py)
            ex.sink.feed(data)
            self.ack(flow_length)
            return
        if ex.replay is not None:              # the retry middleware keeps the body (raw) to send it again
            ex.retry.keep(ex, data)  # type: ignore[union-attr]
        if ex.h2up is not None:
            ex.h2up.send_body(data)
            self.ack(flow_length)
            return
        up = ex.upstream
        if up is not None:
            if up.ex is ex:
                up.transport.write(b"%x\r\n%s\r\n" % (len(data), data) if ex.req_chunked else data)
            self.ack(flow_length)
            return
        # held raw until an upstream is bound: HTTP/1.1 upstreams get it chunk-framed, HTTP/2 ones as DATA
        if ex.pending is None:
            ex.pending = [data]
        else:
            ex.pending.append(data)
        self.unacked += flow_length

    def _malformed(self, flow_length: int) -> None:
        """The body does not match its content-length: reset this stream only; the connection's window gets back
        every byte the stream was given."""
        unacked, self.unacked, self.held = self.unacked + self.held + flow_length, 0, 0
        self.server.ack(self.id, unacked)
        self.server.malformed(self.id)

    def _too_large(self, flow_length: int) -> None:
        """The streamed body passed ``ex.req_limit`` ([limits] max_body_bytes, body-limit): 413."""
        self.ack(flow_length)
        limit, self.ex.req_limit = self.ex.req_limit, 0
        self._give_up_body(responses.too_large(limit))

    def body_timed_out(self) -> None:
        """No body bytes for ``[limits] body_timeout`` while the gateway was reading (``H2Server.sweep``): 408."""
        self._give_up_body(responses.error_answer(408))

    def _give_up_body(self, reply: Answer) -> None:
        """Stop reading the request body: the upstream request is abandoned (it never gets the rest) and the
        client gets ``reply``, or a reset if the response already started, as over HTTP/1.1. The connection's
        other streams go on."""
        ex = self.ex
        ex.pending = None
        self._stop_upstream()
        if self.head_sent:
            return self.abort(ex)
        self.answer(ex, reply)
        self.server.flush()

    def request_ended(self, trailers: Fields | None = None) -> None:
        """The request is complete: once, although h2 reports trailers and the StreamEnded they carry apart."""
        ex = self.ex
        if ex.req_done:
            return
        if self.length >= 0 and ex.req_bytes != self.length:    # less DATA than declared: malformed
            return self._malformed(0)
        ex.req_done = True
        if ex.sink is not None:
            return ex.sink.complete()
        self.request_trailers = trailers
        if ex.h2up is not None:
            ex.h2up.end_body(trailers)
        elif ex.req_chunked and ex.local is None:
            up = ex.upstream
            if up is not None and up.ex is ex:
                up.transport.write(b"0\r\n\r\n")

    def ack(self, size: int) -> None:
        if self.hold:
            self.held += size
        else:
            self.server.ack(self.id, size)

    def cancel(self) -> None:
        """The client reset the stream or went away: stop the upstream side now, and count the exchange (status
        0 when no response was sent), as HTTP/1.1 does for a client that leaves."""
        exchange.account(self.ex, self)
        self._stop_upstream()

    def _stop_upstream(self) -> None:
        """Abandon what carries the request on (a middleware reading the body, an HTTP/2 or HTTP/1.1 upstream
        request) and free the backend."""
        ex = self.ex
        if ex.sink is not None:
            ex.sink.abort()
        if ex.h2up is not None:
            ex.h2up.cancel()
            ex.h2up = None
        up = ex.upstream
        if up is not None and up.ex is ex:
            up.abandon()
        ex.upstream = None
        exchange.release_backend(ex)


def _h2_fields(status: int, fields: Fields) -> Fields:
    """HEADERS for a response: ``:status`` first, names in lowercase (responders and HTTP/1.1 backends name fields
    in any case)."""
    return [(b":status", b"%d" % status), *[(name.lower(), value) for name, value in fields]]


def serve_request(server: Any, stream_id: int, fields: Fields, ended: bool, event: Any) -> None:
    """A request's HEADERS opened stream ``stream_id`` of ``server`` (an ``H2Server``, or an HTTP/3 connection that
    offers the same calls): make its exchange and ``server.stream_class`` stream, check it, route it and start it.
    ``ended``: the HEADERS ended the request; ``server.ends_empty(event)`` says whether what was already read ends
    it with no body bytes (asked only when it matters)."""
    ex = Exchange()
    read = read_request(ex, fields)
    if read is None:
        return server.malformed(stream_id)
    raw, is_grpc, length = read
    ex.keep_alive = True
    ex.xff = ex.xff_in + b", " + server.peer if ex.xff_in is not None and server.xff_trusted else server.peer
    ex.req_has_body = not ended and length != 0 and (length > 0 or not server.ends_empty(event))
    stream = server.streams[stream_id] = server.stream_class(server, stream_id, ex, is_grpc, length)
    ex.conn = stream                       # what middlewares read: client_ip, scheme, entrypoint
    if ended:
        ex.req_done = True
    if ex.upgrade and (ex.method != b"GET" or not server.websocket):   # an extended CONNECT it cannot serve
        return stream.answer(ex, responses.error_answer(501, server.websocket_refusal))
    limit = server.worker.limits.max_body_bytes
    # as for HTTP/1.1: a declared length at once, else as it streams (a WebSocket's DATA is no body)
    if limit and ex.req_has_body and not ex.upgrade:
        if length > limit:
            return stream.answer(ex, responses.too_large(limit))
        ex.req_limit = limit
    reply = exchange.route(ex, stream, raw)
    if reply is None:
        exchange.start(ex, stream)
    elif reply.__class__ is Answer:
        stream.answer(ex, reply)  # type: ignore[arg-type]
    else:
        server.worker.loop.create_task(resume_chain(stream, reply))  # type: ignore[arg-type]


async def resume_chain(stream: Stream, pending: Awaitable[Answer | None]) -> None:
    """The end of an asynchronous request phase (forward-auth...): answer with its reply, or proxy."""
    ex = stream.ex
    try:
        reply = await pending
    except Exception:  # noqa: BLE001 — a middleware bug answers 500, never kills the connection
        reply = exchange.middleware_failed(ex)
    if not stream.current(ex):
        return                             # the client reset the stream meanwhile
    if reply is not None:
        stream.answer(ex, reply)
    else:
        exchange.start(ex, stream)
    stream.server.flush()
