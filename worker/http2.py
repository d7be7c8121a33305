"""The HTTP/2 server side (``h2`` library), and ``Handover``: the first protocol of every HTTP entrypoint
connection, which picks HTTP/1.1 or HTTP/2 and then steps aside.

Negotiation: over TLS, ALPN ``h2`` selects HTTP/2 (anything else, HTTP/1.1); in cleartext the first bytes are
compared with the HTTP/2 connection preface (h2c with prior knowledge). ``Handover`` then installs the real
protocol with ``transport.set_protocol`` and replays the bytes it read, so HTTP/1.1 keeps its fast path
(one extra object per connection, nothing per request).

One ``H2Server`` per connection; one ``Stream`` per request. A stream carries an ``http1.Exchange`` so
routing, the middleware chain and the balancers see exactly what they see for HTTP/1.1. Backends:
- HTTP/1.1 backends (``http://``, ``https://``) go through the regular ``UpstreamProtocol`` and pool; the
  stream stands in for the client connection (``transport``, ``response_finished``, ``upstream_failed``...).
  The exchange is marked HTTP/1.0-style (``http11=False``) so the upstream side passes bodies through
  unchanged instead of re-chunking them, and the stream turns the head it is handed back into HEADERS.
  Like ``ClientProtocol`` it counts a failed attempt for passive health and, under the ``retry`` middleware,
  sends the stream again (``retry_later``, sharing ``http1.repick``), replaying the body the middleware kept.
- HTTP/2 backends (``h2c://``, and gRPC to ``https://``) go through ``upstream_h2`` stream by stream, with
  trailers passed through.

Invariants:
- A slow stream stalls only itself: response bytes beyond the client's window wait in the stream's outbox,
  which pauses that stream's upstream (``h2base``); request bytes are acknowledged to the client only after
  they were handed to the upstream, and not while the upstream pushes back.
- Every stream gets exactly one response or one RST_STREAM. gRPC requests that fail in the gateway get a
  gRPC answer (HTTP 200, ``grpc-status``), see ``proxy/grpc.py``.
- Limits: ``MAX_CONCURRENT_STREAMS`` and ``MAX_HEADER_LIST_SIZE`` are advertised and enforced by ``h2``; a
  client that resets more than ``RESET_LIMIT`` streams within ``RESET_WINDOW`` seconds (rapid reset,
  CVE-2023-44487) gets GOAWAY(ENHANCE_YOUR_CALM) and is disconnected.
- A malformed request or trailers (``valid_field`` and ``_request`` check what h2's own, turned-off, field
  checks did, plus what an HTTP/1.1 backend needs) resets that stream with PROTOCOL_ERROR; nothing of it is
  forwarded.
- No input crashes the worker: protocol errors end the connection with GOAWAY, anything unexpected is
  logged and the connection aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from ..shared import log as gwlog
from . import framing, responses, upstream_h2
from .exchange import Exchange, passive_failure, repick
from .h2base import H2Endpoint, header_value, install_hpack
from .headers import GATEWAY_SET
from .http1 import ClientProtocol
from .proxy import grpc
from .router import RequestView

if TYPE_CHECKING:
    from .process import Worker
    from .runtime import Backend
    from .services.upstream_pool import UpstreamPool
    from .upstream import UpstreamProtocol
    from .upstream_h2 import UpstreamStream

log = gwlog.get("worker.http2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_CONCURRENT_STREAMS = 256
MAX_HEADER_LIST_SIZE = 64 * 1024
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
RESET_LIMIT = 200
RESET_WINDOW = 10.0

# Connection-specific fields an HTTP/1.1 response head may carry; they have no place in HTTP/2 (RFC 9113 §8.2.2).
_NOT_IN_H2 = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
                        b"te"))

# Response head lines (as upstream.py writes them) already turned into HTTP/2 fields; () for a line that is dropped.
# The same few lines repeat on every response, so most cost one dict lookup. Emptied when full.
_LINES: dict[bytes, tuple[bytes, bytes] | tuple[()]] = {}
_LINES_MAX = 4096
_LINE_KEPT_MAX = 128


def _head_fields(head: bytes, end: int) -> list[tuple[bytes, bytes]]:
    """An HTTP/1.1 response head (as upstream.py writes it; ``end`` is where its blank line starts) as HTTP/2
    fields."""
    fields = [(b":status", head[9:12])]
    lines = _LINES
    for line in head[head.find(b"\r\n") + 2: end].split(b"\r\n"):
        field = lines.get(line)
        if field is None:
            field = _h2_field(line)
        if field:
            fields.append(field)
    return fields


def _h2_field(line: bytes) -> tuple[bytes, bytes] | tuple[()]:
    name, _, value = line.partition(b":")
    name = name.strip().lower()
    field = (name, value.strip()) if name and name not in _NOT_IN_H2 else ()
    if len(line) <= _LINE_KEPT_MAX and name != b"set-cookie":
        if len(_LINES) >= _LINES_MAX:
            _LINES.clear()
        _LINES[line] = field
    return field


# What a received field may be. h2's own checks of received fields are turned off (a chain of generators that
# cost more than the rest of a request's header handling); ``valid_field`` makes them, with what an HTTP/1.1
# backend needs on top: :method a token, :path one request-line token, a valid authority, no framing-header
# spellings with "_" (the framing policy of HTTP/1.1 requests).
_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
_CONNECTION_SPECIFIC = _NOT_IN_H2 - {b"te"}
_NAME_CHARS = bytes(c for c in range(0x21, 0x7F) if c != 0x3A and not 0x41 <= c <= 0x5A)    # RFC 9113 §8.2.1
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TARGET_CHARS = bytes(c for c in range(0x21, 0x100) if c not in (0x23, 0x7F))   # no SP, control or "#" fragment
# what a value may hold besides obs-text: HTAB and visible ASCII, as llhttp allows on the HTTP/1.1 side (h2 itself
# only forbids NUL, CR and LF, but the request goes on to HTTP/1.1 backends)
_VALUE_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_VALID_FIELDS: set[tuple[bytes, bytes]] = set()
_VALID_MAX = 4096
_VALID_VALUE_MAX = 256
_NOT_KEPT = frozenset((b"authorization", b"proxy-authorization", b"cookie"))


def valid_field(name: bytes, value: bytes) -> bool:
    """Whether one received field is well-formed on its own (RFC 9113 §8.2.1, §8.2.2): a lowercase name without
    separators, a value without control bytes (HTAB aside) or surrounding whitespace, no connection-specific field,
    TE only "trailers", a known pseudo-header, a :path in origin form (or "*"). Short valid fields are kept in
    ``_VALID_FIELDS``, which callers test first (the same few fields repeat on every request); it is emptied when
    full."""
    if value.translate(None, _VALUE_CHARS) or value.strip(b" \t") != value:
        return False
    if name[:1] == b":":
        if name not in _PSEUDO:
            return False
        if name == b":method":
            if not value or value.translate(None, _TOKEN_CHARS):
                return False
        elif name == b":path":      # origin form only (RFC 9113 §8.3.1): routing and the backend see one path
            if (value[:1] != b"/" and value != b"*") or value.translate(None, _TARGET_CHARS):
                return False
        elif name == b":authority" and value not in framing.VALID_HOSTS and not framing.valid_host(value):
            return False
    elif (not name or name.translate(None, _NAME_CHARS) or name in _CONNECTION_SPECIFIC
          or framing.underscore_alias(name) or (name == b"te" and value.lower() != b"trailers")
          or (name == b"content-length" and framing.content_length(value) != value)
          or (name == b"host" and value not in framing.VALID_HOSTS and not framing.valid_host(value))):
        return False
    if len(value) <= _VALID_VALUE_MAX and name not in _NOT_KEPT:
        if len(_VALID_FIELDS) >= _VALID_MAX:
            _VALID_FIELDS.clear()
        _VALID_FIELDS.add((name, value))
    return True


class Handover(asyncio.Protocol):
    """Chooses HTTP/1.1 or HTTP/2 for a new connection, installs that protocol and replays what it read."""

    __slots__ = ("worker", "entrypoint", "scheme", "port", "tls", "transport", "buf", "last_active", "queue")

    def __init__(self, worker: Worker, entrypoint: str, scheme: bytes, port: int, tls: bool) -> None:
        self.worker = worker
        self.entrypoint = entrypoint
        self.scheme = scheme
        self.port = port
        self.tls = tls
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = b""
        self.last_active = worker.now
        self.queue = ()                        # the worker's sweep reads it: nothing in flight here

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.tls:
            ssl_object = transport.get_extra_info("ssl_object")
            self._switch(ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2", b"")
        else:
            self.worker.connections.add(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = min(len(buf), len(PREFACE))
        if buf[:n] != PREFACE[:n]:
            self._switch(False, buf)
        elif n == len(PREFACE):
            self._switch(True, buf)
        else:
            self.buf = buf

    def _switch(self, http2: bool, data: bytes) -> None:
        self.worker.connections.discard(self)
        proto: asyncio.Protocol
        if http2:
            proto = H2Server(self.worker, self.entrypoint, self.scheme, self.port)
        else:
            proto = ClientProtocol(self.worker, self.entrypoint, self.scheme, self.port)
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        if data:
            proto.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.connections.discard(self)

    def close_if_idle(self) -> bool:
        self.transport.close()
        return True


class Stream:
    """One request on an HTTP/2 connection; towards an HTTP/1.1 upstream it plays the client connection.

    It is also the ``conn`` that ``Observability.finish`` reads (client_ip, entrypoint, ``protocol``), so a
    stream is counted, logged and traced like an HTTP/1.1 request."""

    __slots__ = ("server", "id", "ex", "grpc", "raw_headers", "head_sent", "hold", "held", "unacked",
                 "h2up", "fwd_const", "request_trailers", "body_mark", "body_since")
    protocol = b"HTTP/2.0"                    # what the access log and whoami say (ClientProtocol.protocol)

    def __init__(self, server: H2Server, stream_id: int, ex: Exchange, grpc_request: bool,
                 raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.server = server
        self.id = stream_id
        self.ex = ex
        self.grpc = grpc_request
        self.raw_headers = raw_headers
        self.head_sent = False
        self.hold = False                      # the upstream pushes back: do not open the client's window
        self.held = 0
        self.unacked = 0                       # request bytes buffered before an upstream was bound
        self.h2up: UpstreamStream | None = None
        self.fwd_const = server.fwd_const
        self.request_trailers: list[tuple[bytes, bytes]] | None = None
        self.body_mark = -1                    # the body bytes the last sweep saw, and since when (sweep_bodies)
        self.body_since = 0.0

    # -- what UpstreamProtocol and ClientProtocol._head/_whoami read from a client connection
    @property
    def transport(self) -> Stream:
        return self

    @property
    def worker(self) -> Worker:
        return self.server.worker

    @property
    def entrypoint(self) -> str:
        return self.server.entrypoint

    @property
    def client_ip(self) -> str:
        return self.server.client_ip

    @property
    def scheme(self) -> bytes:
        return self.server.scheme

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.raw_headers

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.server.transport.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        """HTTP/1.1 response bytes from the upstream side: the first block is a head, the rest body (upstream.py
        writes each interim 1xx head alone, before it)."""
        if not self.head_sent:
            end = data.find(b"\r\n\r\n")
            headers = _head_fields(data, end)
            if data[9:10] == b"1":
                self.interim(headers)
                self.server.flush()
                return
            self.send_headers(headers)
            data = data[end + 4:]
        if data:                               # counted upstream (upstream.py), as for HTTP/1.1
            self.server.send_data(self.id, data)
        self.server.flush()

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.write(part)

    def pause_reading(self) -> None:
        self.hold = True

    def resume_reading(self) -> None:
        self.hold = False
        held, self.held = self.held, 0
        self.server.ack(self.id, held)
        self.server.flush()

    def _account(self, ex: Exchange) -> None:
        ClientProtocol._account(self, ex)  # type: ignore[arg-type]

    def _release_backend(self, ex: Exchange) -> None:
        self.server.release_backend(ex)

    def response_finished(self, ex: Exchange, chunked_end: bool) -> None:
        self._account(ex)
        self._release_backend(ex)
        self.server.end_stream(self.id)
        self.server.stream_done(self)

    def upstream_failed(self, ex: Exchange, status: int, message: str) -> None:
        """The backend (HTTP/1.1 or HTTP/2) produced no response head: counted for passive health, then retried
        or answered with an error, exactly as ``ClientProtocol.upstream_failed`` does."""
        passive_failure(ex, self.worker.now)
        reached = ex.upstream is not None or self.h2up is not None    # the request (or part of it) went out
        ex.upstream = None
        self.h2up = None
        if self.server.streams.get(self.id) is not self:
            return self.server.release_backend(ex)     # the client reset the stream meanwhile
        if ex.retry is not None and ex.retry.again(ex, reached):
            return self.retry_later(ex)
        if self.hold:
            self.resume_reading()              # the failed upstream's push-back ends with it
        self.server.release_backend(ex)
        self.answer_error(status, message)

    def retry_later(self, ex: Exchange) -> None:
        """Also called by ``upstream.py`` for a retried status: that upstream's push-back ends with it."""
        if self.hold:
            self.resume_reading()
        ClientProtocol.retry_later(self, ex)  # type: ignore[arg-type]

    def _redispatch(self, ex: Exchange, failed: Backend | None) -> None:
        """The retry delay is over: send the stream again (``retry_later``), unless the client reset it."""
        if self.server.streams.get(self.id) is self:
            self.server.proxy(self, repick(ex.service, failed))
            self.server.flush()

    def body_to_send(self) -> list[bytes] | None:
        """What a newly bound upstream gets of the request body: the bytes that arrived before it, or on a retry
        the whole body so far (kept raw by the retry middleware; ``pending`` is then its tail)."""
        ex = self.ex
        if ex.attempts and ex.replay is not None:
            return [bytes(ex.replay)] if ex.replay else None
        return ex.pending

    def abort(self, ex: Exchange) -> None:
        self._account(ex)
        self._release_backend(ex)
        self.server.reset(self.id, ErrorCodes.INTERNAL_ERROR)
        self.server.stream_done(self)

    def connect_upstream(self, ex: Exchange) -> None:
        self.server.connect_upstream(self)

    # -- responses
    def send_headers(self, headers: list[tuple[bytes, bytes]], end_stream: bool = False) -> None:
        self.head_sent = True
        self.ex.resp_started = True
        self.ex.status = int(headers[0][1])
        if end_stream:
            self.note_grpc_status(headers)
        try:
            self.server.conn.send_headers(self.id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError:
            self.server.drop_outbox(self.id)   # the client reset the stream meanwhile
        if end_stream:
            self.server.drop_outbox(self.id)

    def interim(self, headers: list[tuple[bytes, bytes]]) -> None:
        """A 1xx response (100 Continue, 103 Early Hints): an informational HEADERS block (RFC 9113 §8.1). 101
        has no place in HTTP/2."""
        if self.head_sent or headers[0][1] == b"101":
            return
        try:
            self.server.conn.send_headers(self.id, headers)
        except h2.exceptions.ProtocolError:
            pass                               # the client reset the stream meanwhile

    def answer_local(self, data: bytes) -> None:
        """Answer with a complete HTTP/1.1 response the gateway built (an error, a middleware's reply)."""
        self.ex.local = data                   # counted and logged as the gateway's own answer, as for HTTP/1.1
        if self.grpc:
            self.answer_grpc(*grpc.from_http_status(int(data[9:12])))
            return
        self.write(data)
        self._account(self.ex)
        self.server.end_stream(self.id)
        self.server.stream_done(self)

    def answer_error(self, status: int, message: str | None = None) -> None:
        if self.head_sent:                     # too late for a status: the client learns it from a reset
            return self.abort(self.ex)
        route = self.ex.route
        if route is not None and route.chain.responders:    # the chain's response phase, as for HTTP/1.1
            return self.answer_local(route.chain.error(self.ex, status, message))
        self.answer_local(responses.error(status, message, head=self.ex.is_head))

    def answer_grpc(self, code: int, message: str) -> None:
        self.send_headers(grpc.trailers_only(code, message), end_stream=True)
        self._account(self.ex)
        self.server.stream_done(self)

    # -- request body
    def request_data(self, data: bytes, flow_length: int) -> None:
        ex = self.ex
        if not data:       # an empty DATA frame (padding only, or END_STREAM alone): chunk-framed it would be
            self.ack(flow_length)      # "0\r\n\r\n", the end of the body, and the real end a stray next request
            return
        ex.req_bytes += len(data)
        if ex.req_limit and ex.req_bytes > ex.req_limit:
            return self._too_large(flow_length)
        if ex.sink is not None:        # a middleware reads the whole body first (middlewares/body_buffer.py)
            ex.sink.feed(data)
            self.ack(flow_length)
            return
        if ex.replay is not None:              # the retry middleware keeps the body (raw) to send it again
            ex.retry.keep(ex, data)  # type: ignore[union-attr]
        if self.h2up is not None:
            self.h2up.send_body(data)
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

    def _too_large(self, flow_length: int) -> None:
        """The streamed body passed ``ex.req_limit`` ([limits] max_body_bytes, body-limit): 413."""
        self.ack(flow_length)
        limit, self.ex.req_limit = self.ex.req_limit, 0
        self._give_up_body(responses.too_large(limit, close=False))

    def body_timed_out(self) -> None:
        """No body bytes for ``[limits] body_timeout`` while the gateway was reading (``H2Server.sweep_bodies``):
        408."""
        self._give_up_body(responses.error(408))

    def _give_up_body(self, reply: bytes) -> None:
        """Stop reading the request body: the upstream request is abandoned (it never gets the rest) and the
        client gets ``reply``, or a reset if the response already started, as over HTTP/1.1. The connection's
        other streams go on."""
        ex = self.ex
        ex.pending = None
        self._stop_upstream()
        if self.head_sent:
            return self.abort(ex)
        self.answer_local(reply)
        self.server.flush()

    def request_ended(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """The request is complete: once, although h2 reports trailers and the StreamEnded they carry apart."""
        ex = self.ex
        if ex.req_done:
            return
        ex.req_done = True
        if ex.sink is not None:
            return ex.sink.complete()
        self.request_trailers = trailers
        if self.h2up is not None:
            self.h2up.end_body(trailers)
        elif ex.req_chunked and ex.local is None:
            up = ex.upstream
            if up is not None and up.ex is ex:
                up.transport.write(b"0\r\n\r\n")

    def response_trailers(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        """An HTTP/2 upstream finished the response (with its trailers, if any)."""
        ex = self.ex
        if trailers:
            self.note_grpc_status(trailers)
        self._account(ex)
        self._release_backend(ex)
        self.server.end_stream(self.id, trailers)
        self.server.stream_done(self)

    def note_grpc_status(self, headers: list[tuple[bytes, bytes]]) -> None:
        """A gRPC call's outcome is its ``grpc-status`` (the HTTP status is 200 either way): kept for its span."""
        if self.grpc and self.ex.span is not None:
            code = header_value(headers, b"grpc-status")
            if code is not None and code.isdigit():
                self.ex.grpc_status = int(code)

    def ack(self, size: int) -> None:
        if self.hold:
            self.held += size
        else:
            self.server.ack(self.id, size)

    def cancel(self) -> None:
        """The client reset the stream or went away: stop the upstream side now, and count the exchange (status
        0 when no response was sent), as HTTP/1.1 does for a client that leaves."""
        self._account(self.ex)
        self._stop_upstream()

    def _stop_upstream(self) -> None:
        """Abandon what carries the request on (a middleware reading the body, an HTTP/2 or HTTP/1.1 upstream
        request) and free the backend."""
        ex = self.ex
        if ex.sink is not None:
            ex.sink.abort()
        if self.h2up is not None:
            self.h2up.cancel()
            self.h2up = None
        up = ex.upstream
        if up is not None and up.ex is ex:
            up.abandon()
        ex.upstream = None
        self._release_backend(ex)


class H2Server(H2Endpoint):
    """The server side of one HTTP/2 connection."""

    def __init__(self, worker: Worker, entrypoint: str, scheme: bytes, port: int) -> None:
        super().__init__()
        self.worker = worker
        self.entrypoint = entrypoint
        self.scheme = scheme
        self.port = port
        # h2's checks of received fields are off: _request and valid_field make them (and more) in the pass
        # over the fields the gateway makes anyway; h2 still checks content-length against the DATA received.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None, validate_outbound_headers=False,
                                           normalize_outbound_headers=False, validate_inbound_headers=False,
                                           normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        install_hpack(self.conn)
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        self.streams: dict[int, Stream] = {}
        self.queue = self.streams              # the worker's sweep: a connection with open streams is busy
        self.last_active = worker.now
        self.client_ip = ""
        self.peer = b""
        self.fwd_const = b""
        self.resets = 0
        self.reset_window = worker.now
        self.goaway = False

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self.peer = self.client_ip.encode()
        self.fwd_const = b"X-Real-IP: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Port: %d\r\n" % (
            self.peer, self.scheme, self.port)
        self.xff_trusted = self.worker.runtime.forwarded_for_trusted(self.entrypoint, self.client_ip)
        self.worker.connections.add(self)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.cancel()

    def data_received(self, data: bytes) -> None:
        self.last_active = self.worker.now
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._close(None)
            return
        try:
            for event in events:
                self._event(event)
                if self.closed:                # GOAWAY (rapid reset): the rest of this read is not served
                    return
        except Exception:  # noqa: BLE001 — a bug must cost one connection, never the worker
            log.exception("HTTP/2 connection aborted")
            self.transport.abort()
            return
        self.flush()

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None or stream.ex.local is not None:
                self.ack(event.stream_id, event.flow_controlled_length)
            else:
                stream.request_data(event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.request_ended()
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                if all(f[0][:1] != b":" and (f in _VALID_FIELDS or valid_field(f[0], f[1])) for f in event.headers):
                    stream.request_ended(event.headers)
                else:
                    self._malformed(event.stream_id)
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window_changed(event)
        elif isinstance(event, h2.events.StreamReset):
            self._client_reset(event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            self.flush_now()
            self.transport.close()

    def _close(self, code: int | None) -> None:
        """Send GOAWAY with ``code`` and close. None: h2 has queued its own GOAWAY, for a protocol error in what
        it received (``receive_data``), and a second one would only repeat it."""
        try:
            if code is not None:
                self.conn.close_connection(code)
            self.flush_now()
        except h2.exceptions.ProtocolError:
            pass
        self.closed = True
        self.transport.close()

    def _client_reset(self, stream_id: int) -> None:
        now = self.worker.now
        if now - self.reset_window > RESET_WINDOW:
            self.reset_window = now
            self.resets = 0
        self.resets += 1
        self.drop_outbox(stream_id)
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.cancel()
        if self.resets > RESET_LIMIT:
            log.warning(f"client {self.client_ip} reset {self.resets} streams: GOAWAY (rapid reset)")
            self._close(ErrorCodes.ENHANCE_YOUR_CALM)

    # -- requests
    def _malformed(self, stream_id: int) -> None:
        """A malformed request or trailers: a stream error (RFC 9113 §8.1.1), the other streams go on."""
        self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.cancel()

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.worker.draining:
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        method = path = authority = scheme = protocol = host = None
        kept: list[tuple[bytes, bytes]] = []
        xff = None
        cookies: list[bytes] = []
        is_grpc = False
        regular = False
        raw = event.headers
        for field in raw:
            name, value = field
            if field not in _VALID_FIELDS and not valid_field(name, value):
                return self._malformed(stream_id)
            if name[:1] == b":":               # one of _PSEUDO (valid_field): each at most once, before the rest
                if regular:
                    return self._malformed(stream_id)
                if name == b":method":
                    if method is not None:
                        return self._malformed(stream_id)
                    method = value
                elif name == b":path":
                    if path is not None:
                        return self._malformed(stream_id)
                    path = value
                elif name == b":authority":
                    if authority is not None:
                        return self._malformed(stream_id)
                    authority = value
                elif name == b":scheme":
                    if scheme is not None:
                        return self._malformed(stream_id)
                    scheme = value
                else:
                    if protocol is not None:
                        return self._malformed(stream_id)
                    protocol = value
                continue
            regular = True
            if name == b"host":
                if host is not None:
                    return self._malformed(stream_id)
                host = value
                continue
            if name in GATEWAY_SET:
                continue
            if name == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
                continue
            if name == b"cookie":              # HTTP/2 may split cookies; HTTP/1.1 needs one field
                cookies.append(value)
                continue
            if name == b"content-type" and value[:16] == b"application/grpc":
                is_grpc = True
            kept.append((name, value))
        # RFC 9113 §8.3.1: :method always; :scheme and :path unless a plain CONNECT, which has neither; :protocol
        # only on CONNECT (RFC 8441). An authority (:authority or Host; the same one when both are given).
        if method is None or (protocol is not None and method != b"CONNECT"):
            return self._malformed(stream_id)
        if method == b"CONNECT" and protocol is None:
            if scheme is not None or path is not None:
                return self._malformed(stream_id)
        elif scheme is None or path is None or (path == b"*" and method != b"OPTIONS"):
            return self._malformed(stream_id)
        if authority is None:
            if host is None:
                return self._malformed(stream_id)
            authority = host
        elif host is not None and host != authority:
            return self._malformed(stream_id)
        if cookies:
            kept.append((b"cookie", b"; ".join(cookies)))
        ex = Exchange()
        ex.method = method
        ex.http11 = False                      # bodies pass through unchanged (see the module docstring)
        ex.keep_alive = True
        ex.is_head = method == b"HEAD"
        ex.host = authority
        ex.target = path or b"/"
        ex.headers = kept
        if xff is not None:
            ex.xff_in = xff
        ex.xff = xff + b", " + self.peer if xff is not None and self.xff_trusted else self.peer
        ex.req_has_body = event.stream_ended is None
        ex.req_chunked = False                 # the body is held raw; chunked only towards HTTP/1.1 (``_bind``)
        runtime = self.worker.runtime
        ex.runtime = runtime
        stream = self.streams[stream_id] = Stream(self, stream_id, ex, is_grpc, raw)
        ex.conn = stream                       # what middlewares read: client_ip, scheme, entrypoint
        if event.stream_ended is not None:
            ex.req_done = True
        limit = self.worker.limits.max_body_bytes
        if limit and ex.req_has_body:          # as for HTTP/1.1: a declared length at once, else as it streams
            cl = header_value(kept, b"content-length")
            if cl is not None and int(cl) > limit:     # digits only (valid_field)
                return stream.answer_local(responses.too_large(limit, close=False))
            ex.req_limit = limit

        table = runtime.tables.get(self.entrypoint)
        target, _, query = ex.target.partition(b"?")
        host = ex.host
        host = host[: host.find(b"]") + 1] if host[:1] == b"[" else host.partition(b":")[0]
        view = RequestView(host.decode("latin-1").lower(), target.decode("latin-1"), ex.method.decode("latin-1"),
                           kept, query, self.client_ip)
        route = table.match(view) if table is not None else None
        tracer = self.worker.obs.tracer
        if tracer is not None:                 # after matching: rules see the client's own tracing headers
            tracer.start(ex)
        if route is None:
            return stream.answer_local(responses.error(404, head=ex.is_head))
        ex.route = route
        ex.service = route.service
        if route.chain.middlewares:
            reply = route.chain.on_request(ex)
            if reply is not None:
                if reply.__class__ is bytes:
                    return stream.answer_local(reply)  # type: ignore[arg-type]
                self.worker.loop.create_task(self._resume_chain(stream, reply))  # type: ignore[arg-type]
                return
        self._dispatch(stream)

    async def _resume_chain(self, stream: Stream, pending: Awaitable[bytes | None]) -> None:
        """The end of an asynchronous request phase (forward-auth...): answer with its reply, or proxy."""
        try:
            reply = await pending
        except Exception:  # noqa: BLE001 — a middleware bug answers 500, never kills the connection
            log.exception("middleware failed on %r", stream.ex.target)
            reply = responses.error(500)
        if self.streams.get(stream.id) is not stream:
            return                             # the client reset the stream meanwhile
        if reply is not None:
            stream.answer_local(reply)
        else:
            self._dispatch(stream)
        self.flush()

    def _dispatch(self, stream: Stream) -> None:
        ex = stream.ex
        service = ex.service
        if service.internal is not None:
            return stream.answer_local(ClientProtocol._whoami(stream, ex))  # type: ignore[arg-type]
        if service.sticky is None:
            backend = service.balancer.pick()
        else:                                  # sticky sessions, conversation affinity: as ClientProtocol does
            backend, ex.set_cookie = service.sticky.pick(ex.headers, self.worker.now)
        self.proxy(stream, backend)

    def proxy(self, stream: Stream, backend: Backend | None) -> None:
        """Send the stream to ``backend`` (first try or retry), or answer 503 when the service has none."""
        if backend is None:
            return stream.answer_error(503)
        stream.ex.backend = backend
        backend.acquire()
        self.connect_upstream(stream)

    def connect_upstream(self, stream: Stream) -> None:
        ex = stream.ex
        backend = ex.backend
        if backend.scheme == "h2c" or (stream.grpc and backend.scheme == "https"):
            upstream_h2.open_stream(self, stream)
            return
        up = backend.pool.get_idle()
        if up is not None:
            self._bind(stream, up)
        else:
            self.worker.loop.create_task(self._connect_and_bind(stream, backend.pool))

    async def _connect_and_bind(self, stream: Stream, pool: UpstreamPool) -> None:
        """``pool`` is passed in: a stream reset meanwhile (``Stream.cancel``) clears ``ex.backend``."""
        ex = stream.ex
        try:
            up = await pool.connect(ex.service.connect_timeout)
        except TimeoutError:
            if self.streams.get(stream.id) is stream:
                stream.upstream_failed(ex, 504, "Gateway timeout: connecting to the backend timed out")
            return
        except OSError as e:
            if self.streams.get(stream.id) is stream:
                stream.upstream_failed(ex, 502, f"Bad gateway: cannot connect to backend: {e.strerror or e}")
            return
        if self.closed or self.streams.get(stream.id) is not stream:
            pool.release(up)
            return
        self._bind(stream, up)

    def _bind(self, stream: Stream, up: UpstreamProtocol) -> None:
        ex = stream.ex
        ex.upstream = up
        ex.t_up = perf_counter()
        self.outbox(stream.id).source = up
        names = [name.lower() for name, _ in ex.headers]   # middlewares may add fields in any case
        if b"te" in names:     # hop-by-hop (RFC 9110 §7.6.1): kept for HTTP/2 backends (gRPC needs it), not here
            ex.headers = [field for field in ex.headers if field[0].lower() != b"te"]
        ex.req_chunked = ex.req_has_body and b"content-length" not in names
        up.bind(stream, ex, ClientProtocol._head(stream, ex), ex.service.response_timeout)  # type: ignore[arg-type]
        body = stream.body_to_send()
        if body is not None or (ex.req_done and ex.req_chunked):
            body = body or []
            if ex.req_chunked:
                body = [b"%x\r\n%s\r\n" % (len(d), d) for d in body]
                if ex.req_done:
                    body.append(b"0\r\n\r\n")
            up.transport.writelines(body)
            ex.pending = None
            unacked, stream.unacked = stream.unacked, 0
            stream.ack(unacked)
            self.flush()

    def sweep_bodies(self, now: float, body_cut: float) -> None:
        """The worker's sweep: streams whose client sent no body bytes since ``body_cut`` while the gateway was
        reading time out (``Stream.body_timed_out``). Progress is read from ``req_bytes`` here, so DATA frames
        pay nothing for it. Time the gateway holds a body back (an upstream pushing back, bytes not yet
        acknowledged while a backend connection is made) does not count. gRPC streams are left alone: a client-
        or bidirectional-streaming call may rightly pause for longer; its deadline is the client's and the backend's."""
        stalled = []
        for stream in self.streams.values():
            ex = stream.ex
            if ex.req_done or stream.grpc or stream.hold or stream.unacked or ex.local is not None:
                stream.body_mark = -1
            elif stream.body_mark != ex.req_bytes:
                stream.body_mark = ex.req_bytes
                stream.body_since = now
            elif stream.body_since < body_cut:
                stalled.append(stream)
        for stream in stalled:
            stream.body_timed_out()

    def release_backend(self, ex: Exchange) -> None:
        backend = ex.backend
        if backend is not None:
            ex.backend = None
            backend.release()

    def stream_done(self, stream: Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
        if self.goaway and not self.streams and not self.closed:
            self.flush_now()                   # the stream's last frames, then the close
            self.closed = True
            self.transport.close()
        else:
            self.flush()

    def close_if_idle(self) -> bool:
        if self.closed:
            return False
        if not self.goaway:
            # A GOAWAY written beside the state machine: h2's close_connection() would forbid finishing the
            # streams in flight, which is the point of a graceful drain.
            self.goaway = True
            self.flush_now()
            frame = GoAwayFrame(0)
            frame.last_stream_id = self.conn.highest_inbound_stream_id
            frame.error_code = ErrorCodes.NO_ERROR
            self.transport.write(frame.serialize())
        if self.streams:
            return False
        self.closed = True
        self.transport.close()
        return True
