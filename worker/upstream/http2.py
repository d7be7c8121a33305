"""The HTTP/2 upstream side: exchanges proxied to HTTP/2 backends (``h2c://`` servers, ``https://`` servers of a
service with ``http_version = "2"``, and gRPC calls to ``https://`` servers, which must then offer ALPN ``h2``),
whatever the client speaks: an HTTP/2 ``Stream`` or an HTTP/1.1 ``ClientProtocol``, both ``Downstream``s.

One multiplexed connection per backend (scheme, host, port) per worker, opened on first use and shared by
every stream; a new one is opened when it is gone or has received GOAWAY. A proxied exchange is an
``UpstreamStream`` joining its client side to a stream on that connection:

- request: HEADERS built from the client's (``:authority`` per ``pass_host_header``, forwarding headers
  added, ``te: trailers`` kept), DATA and trailers relayed as they come, END_STREAM when the client ended.
- response: handed to the client stream as status and fields after ``exchange.response_head`` (passive health,
  retry, the route's response phase: ``headers``, ``compress``... as for HTTP/1.1 backends), DATA (through the
  phase's body filter, if any) and *trailers* (``grpc-status``...); DATA is acknowledged to the backend only once
  it is queued for the client, and not while the client pushes back (an HTTP/2 client's outbox over its high
  water mark, an HTTP/1.1 client's write buffer full: ``pause_reading``), so flow control holds end to end; the
  client side frames it for its protocol (an HTTP/1.1 client gets a body without content-length chunk-framed,
  and the trailers in its last chunk). Request DATA waiting for the backend's window likewise holds the client
  back (``_RequestBody``).
- a reset or lost backend becomes a reset of the client stream, or — before any response head — a gateway
  answer (502, or gRPC UNAVAILABLE); a client reset cancels the backend stream (RST_STREAM CANCEL).
- a head whose status the ``retry`` middleware retries is dropped unread (RST_STREAM CANCEL) before the client
  stream is sent again.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from ...shared import log as gwlog
from ...shared.errors import ConnectError, UpstreamTimeout
from .. import exchange
from ..http2.endpoint import H2Endpoint, header_value
from ..http2.field_coding import install_hpack

if TYPE_CHECKING:
    from ..exchange import Downstream, Exchange
    from ..process import Worker
    from ..services.upstream_pool import UpstreamPool

log = gwlog.get("worker.upstream.http2")

CONNECTION_WINDOW = 16 << 20
_NOT_FORWARDED = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                            b"upgrade", b"host"))


class _RequestBody:
    """The client side as the source of a backend stream's outbox: too much request body waiting for the
    backend's window stops the client's body."""

    __slots__ = ("front",)

    def __init__(self, front: Downstream) -> None:
        self.front = front

    def pause_reading(self) -> None:
        self.front.hold_body()

    def resume_reading(self) -> None:
        self.front.release_body()


class H2Upstream(H2Endpoint):
    """One HTTP/2 connection to a backend."""

    def __init__(self, key: UpstreamPool, registry: dict[UpstreamPool, H2Upstream]) -> None:
        super().__init__()
        self.key = key
        self.registry = registry
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        install_hpack(self.conn)
        self.streams: dict[int, UpstreamStream] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()
        self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.usable = False
        if self.registry.get(self.key) is self:
            del self.registry[self.key]
        for us in list(self.streams.values()):
            us.upstream_gone()
        self.streams.clear()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.usable = False
            self.transport.close()
            return
        touched: set[Downstream] = set()
        for event in events:
            us = self.streams.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.DataReceived):
                if us is None:
                    self.ack(event.stream_id, event.flow_controlled_length)
                else:
                    us.response_data(event.data, event.flow_controlled_length)
            elif isinstance(event, h2.events.ResponseReceived) and us is not None:
                us.response_head(event.headers, event.stream_ended is not None)
            elif isinstance(event, h2.events.InformationalResponseReceived) and us is not None:
                us.front.send_interim(int(header_value(event.headers, b":status") or 0), b"",
                                      _forwarded(event.headers))
            elif isinstance(event, h2.events.TrailersReceived) and us is not None:
                us.trailers = list(event.headers)
            elif isinstance(event, h2.events.StreamEnded) and us is not None:
                us.response_end()
            elif isinstance(event, h2.events.StreamReset) and us is not None:
                us.upstream_gone()
            elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                self.window_changed(event)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.usable = False            # finish what runs, open new streams elsewhere
            if us is not None:
                touched.add(us.front)
        self.flush()
        for front in touched:
            front.flush()


class UpstreamStream:
    """An exchange's stream on a backend connection; also the source that feeds its client side."""

    __slots__ = ("up", "id", "front", "ex", "hold", "held", "trailers", "done", "timer")

    def __init__(self, up: H2Upstream, stream_id: int, front: Downstream, ex: Exchange) -> None:
        self.up = up
        self.id = stream_id
        self.front = front
        self.ex = ex
        self.hold = False
        self.held = 0
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.done = False
        self.timer: asyncio.TimerHandle | None = None   # the response-header timeout

    def timed_out(self) -> None:
        """No response head within the service's ``timeouts.response_header``: 504 (gRPC DEADLINE_EXCEEDED)."""
        self.timer = None
        if self.done:
            return
        self.cancel()
        front = self.front
        front.fail(self.ex, UpstreamTimeout("Gateway timeout: backend did not answer in time"))
        front.flush()

    # -- request side (called by the client stream)
    def send_body(self, data: bytes) -> None:
        self.up.send_data(self.id, data)
        self.up.flush()

    def end_body(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.up.end_stream(self.id, trailers)
        self.up.flush()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.done:
            self.done = True
            self.up.streams.pop(self.id, None)
            self.up.reset(self.id, ErrorCodes.CANCEL)
            self.up.flush()

    # -- the client's outbox pushes back on us
    def pause_reading(self) -> None:
        self.hold = True

    def resume_reading(self) -> None:
        self.hold = False
        held, self.held = self.held, 0
        self.up.ack(self.id, held)
        self.up.flush()

    # -- response side (events from the backend)
    def response_head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        """The response HEADERS; ``ended``: a trailers-only response (gRPC errors), complete in this block."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        front = self.front
        ex = self.ex
        status = int(header_value(headers, b":status") or 0)
        fields = _forwarded(headers)
        if not exchange.response_head(ex, front, status, fields):
            self.cancel()                      # a retried status: the response is dropped unread
            ex.h2up = None
            return front.retry_later(ex)
        ex.upstream = None
        front.send_head(ex, status, b"", fields, header_value(fields, b"content-length") is not None, end=ended)

    def response_data(self, data: bytes, flow_length: int) -> None:
        front = self.front
        ex = self.ex
        ex.resp_bytes += len(data)
        if ex.filter is not None:              # compress, token metering: as for HTTP/1.1 backends
            data = ex.filter.feed(data)
        if data:
            front.send_body(ex, data)
        if self.hold:
            self.held += flow_length
        else:
            self.up.ack(self.id, flow_length)

    def response_end(self) -> None:
        self.done = True
        self.up.streams.pop(self.id, None)
        front = self.front
        ex = self.ex
        ex.h2up = None
        if ex.filter is not None:              # the transformed body's last bytes
            tail = ex.filter.finish()
            ex.filter = None
            if tail:
                front.send_body(ex, tail)
        front.finish(ex, self.trailers)

    def upstream_gone(self) -> None:
        if self.done:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.done = True
        self.up.streams.pop(self.id, None)
        front = self.front
        front.fail(self.ex, ConnectError("Bad gateway: backend reset the stream"))
        front.flush()


def _forwarded(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A response's fields without pseudo-fields and connection-specific ones."""
    return [(n, v) for n, v in headers if n[:1] != b":" and n not in _NOT_FORWARDED]


def open_stream(front: Downstream, ex: Exchange) -> None:
    """Send ``ex`` (its backend picked and acquired) on a stream of that backend's connection."""
    front.worker.loop.create_task(_open(front, ex))


_connections: dict[UpstreamPool, H2Upstream] = {}
"""This process's backend connections, one per pool: a pool is one server with one set of TLS settings (a
service's ``tls.ca_file``, ``insecure_skip_verify``). A worker process runs exactly one ``Worker``."""


async def _connection(worker: Worker, pool: UpstreamPool, timeout: float) -> H2Upstream:
    registry = _connections
    up = registry.get(pool)
    if up is None or not up.usable:
        up = registry[pool] = H2Upstream(pool, registry)
        try:
            await asyncio.wait_for(pool.open(lambda: up, pool.h2_ssl), timeout)
        except BaseException:
            if registry.get(pool) is up:
                del registry[pool]
            raise
    await asyncio.wait_for(asyncio.shield(up.ready), timeout)
    return up


async def _open(front: Downstream, ex: Exchange) -> None:
    backend, service = ex.backend, ex.service
    try:
        up = await _connection(front.worker, backend.pool, service.connect_timeout)
    except (TimeoutError, OSError) as e:
        front.fail(ex, exchange.connect_error(e))
        return front.flush()
    if not front.current(ex):
        return                                  # the client reset the stream or went away meanwhile
    authority = ex.host if service.pass_host_header else backend.host_header
    headers = [(b":method", ex.method), (b":scheme", b"https" if backend.scheme == "https" else b"http"),
               (b":authority", authority), (b":path", ex.target)]
    # names in lowercase: HTTP/1.1 clients and middlewares write them in any case
    headers += [(n.lower(), v) for n, v in ex.headers if n.lower() not in _NOT_FORWARDED]
    if ex.http11:                              # an HTTP/1.1 client gets trailers in its last chunk (TE is
        headers.append((b"te", b"trailers"))   # hop-by-hop: the gateway says what it accepts itself)
    headers += [(b"x-forwarded-for", ex.xff), (b"x-forwarded-host", ex.host), (b"x-real-ip", front.peer),
                (b"x-forwarded-proto", front.scheme), (b"x-forwarded-port", b"%d" % front.port)]
    stream_id = up.conn.get_next_available_stream_id()
    body = front.body_to_send(ex)
    no_body = ex.req_done and not body
    ex.t_up = perf_counter()
    up.conn.send_headers(stream_id, headers, end_stream=no_body)
    us = up.streams[stream_id] = UpstreamStream(up, stream_id, front, ex)
    us.timer = front.worker.loop.call_later(service.response_timeout, us.timed_out)
    up.outbox(stream_id).source = _RequestBody(front)
    front.bind_h2(ex, us)
    for chunk in body or ():
        up.send_data(stream_id, chunk)
    front.body_sent(ex)
    if ex.req_done and not no_body:
        up.end_stream(stream_id, front.request_trailers)
    up.flush()
    front.flush()
