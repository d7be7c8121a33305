"""``H3Server``: the server side of one QUIC connection carrying HTTP/3 (aioquic), one ``H3Stream`` per request;
``H3Entrypoint``: an entrypoint's HTTP/3 side in one worker, on the UDP socket the master bound for its slot.

A request stream is an ``http2.Stream`` (``H3Stream`` only renames the protocol): ``http2.stream.serve_request``
makes, checks, routes and starts its ``Exchange`` for both protocols, so HTTP/3 requests meet the same router,
middleware chain, services and upstream sides as HTTP/2 ones. ``H3Server`` offers a stream the calls an
``H2Server`` offers (``send_headers``, ``send_data``, ``end_stream``, ``reset``, ``malformed``, ``stream_done``,
``outbox``, ``ack``), translated to aioquic's ``H3Connection``.

Invariants:
- No session tickets are issued, so there is no resumption and no 0-RTT: a request is never replayable early data.
- Certificates: the entrypoint's default certificate (``tls.cert_file``, else the first of ``tls.certificates``);
  when the TCP side's certificate store reloads (files changed, SIGHUP), new QUIC connections get the new one.
  aioquic chooses no certificate by SNI and verifies no client certificate (validation refuses
  ``tls.client_ca_file`` with ``http3``).
- Response push-back: a stream whose unacknowledged bytes in aioquic's send buffer pass ``HIGH_WATER`` pauses its
  upstream until they fall below ``LOW_WATER`` (checked after every transmit). Request bodies have no push-back:
  aioquic extends the client's flow-control window as bytes arrive (``ack`` has nothing to do).
- No input crashes the worker: aioquic closes a connection on protocol errors (a field section breaking RFC 9114
  §4.2 included); a request that passes them but fails ``http2.fields.read_request`` resets its stream only;
  anything unexpected is logged and the connection closed.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset
from h2.errors import ErrorCodes

from ...shared import log as gwlog
from ..exchange import Fields
from ..hop_headers import forwarded_const
from ..http2.endpoint import HIGH_WATER, LOW_WATER, Outbox
from ..http2.fields import valid_trailers
from ..http2.server import H2Server
from ..http2.stream import Stream, serve_request

if TYPE_CHECKING:
    import socket

    from ..limits import Limits
    from ..process import Worker
    from ..tls import CertStore

log = gwlog.get("worker.http3")

# The stream errors a Stream asks for (HTTP/2 codes) as HTTP/3 codes (RFC 9114 §8.1).
_RESET_CODES = {ErrorCodes.PROTOCOL_ERROR: ErrorCode.H3_MESSAGE_ERROR,
                ErrorCodes.INTERNAL_ERROR: ErrorCode.H3_INTERNAL_ERROR,
                ErrorCodes.REFUSED_STREAM: ErrorCode.H3_REQUEST_REJECTED}
# What aioquic raises for a send on a stream the client reset or that already ended.
_SEND_ERRORS = (H3Error, AssertionError, ValueError)


class H3Stream(Stream):
    """One request on an HTTP/3 connection: an HTTP/2 stream in all but the name."""

    __slots__ = ()
    protocol = b"HTTP/3"


class _Peer:
    """What an ``H3Server``'s ``transport`` is to the rest of the worker: the client's address, and ``abort``
    (the drain's last word) closing the QUIC connection. It has no socket of its own, so the worker never takes
    the shared UDP socket's queue for this connection's unread request (``retire.unread_bytes``)."""

    __slots__ = ("server",)

    def __init__(self, server: H3Server) -> None:
        self.server = server

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.server.client
        if name == "sockname":
            return self.server.udp.get_extra_info("sockname")
        return default

    def abort(self) -> None:
        self.server.close_now()


class H3Server(QuicConnectionProtocol):
    """The server side of one QUIC connection (made by ``QuicServer`` for each new connection ID)."""

    stream_class = H3Stream
    websocket = False                        # no extended CONNECT over HTTP/3 (RFC 9220) here
    websocket_refusal = "WebSocket over HTTP/3 is not supported"
    sweep_bodies = H2Server.sweep_bodies     # the body timeout, stream by stream, as over HTTP/2

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *, entry: H3Entrypoint) -> None:
        super().__init__(quic, stream_handler)
        self.entry = entry
        self.worker: Worker = entry.worker
        self.entrypoint = entry.name
        self.scheme = b"https"
        self.port = entry.port
        self.alt_svc = None                  # announced on the TCP side only
        self.transport = _Peer(self)
        self.udp: asyncio.DatagramTransport = None  # type: ignore[assignment]
        self.h3: H3Connection = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.client_ip = ""
        self.peer = b""
        self.fwd_const = b""
        self.xff_trusted = False
        self.streams: dict[int, Stream] = {}
        self.outboxes: dict[int, Outbox] = {}
        self.batch: list[H3Event] = []      # the HTTP/3 events of the QUIC event being handled
        self.highest = -1                    # the highest request stream opened (later HEADERS are trailers)
        self.last_active = self.worker.now
        self.closed = False
        self.goaway = False

    # -- datagrams and events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.udp = transport  # type: ignore[assignment]
        self.h3 = H3Connection(self._quic)
        self.entry.connections.add(self)
        self.worker.connections.add(self)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self.client is None:
            self.client = addr[:2]
            self.client_ip, self.peer, self.fwd_const = forwarded_const(self.transport, self.scheme, self.port)
            self.xff_trusted = self.worker.runtime.forwarded_for_trusted(self.entrypoint, self.client_ip)
        self.last_active = self.worker.now
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        try:
            if isinstance(event, StreamReset):
                self._client_reset(event.stream_id)
            elif isinstance(event, ConnectionTerminated):
                self._terminated()
                return
            batch = self.h3.handle_event(event)
            for h3_event in batch:
                self._h3_event(h3_event, batch)
        except Exception:  # noqa: BLE001 — a bug must cost one connection, never the worker
            log.exception("HTTP/3 connection aborted")
            self.close_now()

    def _h3_event(self, event: H3Event, batch: list[H3Event]) -> None:
        stream_id = event.stream_id  # type: ignore[attr-defined]
        stream = self.streams.get(stream_id)
        if isinstance(event, HeadersReceived):
            if stream is not None:
                if valid_trailers(event.headers):
                    stream.request_ended(event.headers)
                else:
                    self.malformed(stream_id)
            elif stream_id > self.highest:
                self.highest = stream_id
                self._request(event, batch)
        elif isinstance(event, DataReceived):
            if stream is not None and event.data and stream.ex.local is None:
                stream.request_data(event.data, len(event.data))
            if event.stream_ended:
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.request_ended()

    def _request(self, event: HeadersReceived, batch: list[H3Event]) -> None:
        if self.worker.draining or self.entry.closing:
            self.reset(event.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self.batch = batch
        serve_request(self, event.stream_id, event.headers, event.stream_ended, event)

    def ends_empty(self, event: HeadersReceived) -> bool:
        """Whether the events already read end the request with no body bytes (HEADERS, then an empty DATA frame
        or only the stream's FIN): the request then goes to an HTTP/1.1 backend without a body."""
        batch = self.batch
        for later in batch[batch.index(event) + 1:]:
            if getattr(later, "stream_id", None) == event.stream_id:
                return isinstance(later, DataReceived) and not later.data and later.stream_ended
        return False

    def _client_reset(self, stream_id: int) -> None:
        self.drop_outbox(stream_id)
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.cancel()

    def _terminated(self) -> None:
        """The QUIC connection ended (closed by either side, idle timeout): every stream still open is cancelled."""
        self.closed = True
        self.worker.connections.discard(self)
        self.entry.gone(self)
        streams = list(self.streams.values())
        self.streams.clear()
        self.outboxes.clear()
        for stream in streams:
            stream.cancel()

    # -- what a Stream calls (as on an H2Server)
    def send_headers(self, stream_id: int, headers: Fields, end: bool = False) -> bool:
        try:
            self.h3.send_headers(stream_id, headers, end_stream=end)
        except _SEND_ERRORS:
            return False
        self.flush()
        return True

    def send_data(self, stream_id: int, data: bytes) -> None:
        if data:
            try:
                self.h3.send_data(stream_id, data, end_stream=False)
            except _SEND_ERRORS:
                return
            self.flush()

    def end_stream(self, stream_id: int, trailers: Fields | None = None) -> None:
        self.drop_outbox(stream_id)
        if trailers:
            self.send_headers(stream_id, trailers, end=True)
            return
        try:
            self.h3.send_data(stream_id, b"", end_stream=True)
        except _SEND_ERRORS:
            return
        self.flush()

    def outbox(self, stream_id: int) -> Outbox:
        """Where a stream's upstream registers as the source of its bytes (paused by ``_watch_sources``)."""
        box = self.outboxes.get(stream_id)
        if box is None:
            box = self.outboxes[stream_id] = Outbox()
        return box

    def drop_outbox(self, stream_id: int) -> None:
        box = self.outboxes.pop(stream_id, None)
        if box is not None and box.paused and box.source is not None:
            box.source.resume_reading()

    def ack(self, stream_id: int, size: int) -> None:
        """aioquic gives the client its flow-control credit back itself."""

    def reset(self, stream_id: int, code: int) -> None:
        self.drop_outbox(stream_id)
        try:
            self._quic.reset_stream(stream_id, _RESET_CODES.get(code, ErrorCode.H3_INTERNAL_ERROR))
        except _SEND_ERRORS:
            return                           # already ended or reset
        self.flush()

    def malformed(self, stream_id: int) -> None:
        """A malformed request or trailers: a stream error (RFC 9114 §4.1.2), the other streams go on."""
        self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.cancel()

    def stream_done(self, stream: Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
        self.flush()
        if self.goaway and not self.streams:
            self.close_now()

    def flush(self) -> None:
        self._transmit_soon()

    def transmit(self) -> None:
        if self.udp.is_closing():            # the entrypoint stopped; aioquic's timers may still fire
            return
        super().transmit()
        if self.outboxes:
            self._watch_sources()

    def _watch_sources(self) -> None:
        """Pause the upstream of a stream whose bytes wait in aioquic's send buffer past ``HIGH_WATER``; resume
        it below ``LOW_WATER``. aioquic has no public count of them: its stream's send buffer is read."""
        streams = self._quic._streams
        for stream_id, box in self.outboxes.items():
            quic_stream = streams.get(stream_id)
            if box.source is None or quic_stream is None:
                continue
            waiting = len(quic_stream.sender._buffer)
            if box.paused:
                if waiting < LOW_WATER:
                    box.paused = False
                    box.source.resume_reading()
            elif waiting > HIGH_WATER:
                box.paused = True
                box.source.pause_reading()

    # -- what the worker calls (limits.Connection)
    def sweep(self, now: float, limits: Limits) -> None:
        """The body timeout per stream; the idle timeout of a connection without streams (QUIC's own idle
        timeout, the same value, also ends it)."""
        if self.streams:
            self.sweep_bodies(now, now - limits.body_timeout)
        elif self.last_active < now - limits.idle_timeout:
            self.close_if_idle()

    def close_if_idle(self) -> bool:
        """Close now when no request is in flight, else once the last one ends (a drain, a removed entrypoint)."""
        if self.closed:
            return False
        self.goaway = True
        if self.streams:
            return False
        self.close_now()
        return True

    def close_now(self) -> None:
        if not self.closed:
            self._quic.close(error_code=ErrorCode.H3_NO_ERROR)
            self.transmit()
            self._terminated()


class _Listener(QuicServer):
    """aioquic's server: routes datagrams to connections by connection ID, makes new ones."""

    def use(self, configuration: QuicConfiguration) -> None:
        """New connections get ``configuration`` (certificates reloaded); established ones keep theirs."""
        self._configuration = configuration


class H3Entrypoint:
    """The HTTP/3 side of one entrypoint in one worker. ``close()`` stops it gracefully: no new request is taken,
    idle connections close now and busy ones after their last response, then the socket is let go."""

    def __init__(self, worker: Worker, ep: dict[str, Any], store: CertStore) -> None:
        self.worker = worker
        self.name: str = ep["name"]
        self.port: int = ep["port"]
        self.store = store
        self.listener: _Listener = None  # type: ignore[assignment]
        self.connections: set[H3Server] = set()
        self.closing = False

    @classmethod
    async def start(cls, worker: Worker, ep: dict[str, Any], sock: socket.socket, store: CertStore) -> H3Entrypoint:
        entry = cls(worker, ep, store)
        entry.listener = _Listener(configuration=entry.configuration(),
                                   create_protocol=partial(H3Server, entry=entry))
        await worker.loop.create_datagram_endpoint(lambda: entry.listener, sock=sock)
        store.on_reload.append(entry.reload)
        return entry

    def configuration(self) -> QuicConfiguration:
        """QUIC settings for new connections: HTTP/3's ALPN, the default certificate, the idle timeout."""
        config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN,
                                   idle_timeout=self.worker.limits.idle_timeout)
        cert_file, key_file = self.store.pairs[0]
        config.load_cert_chain(cert_file, key_file)
        return config

    def reload(self) -> None:
        """The TCP side's certificate store re-read its files: new connections get the new certificate."""
        try:
            self.listener.use(self.configuration())
        except (OSError, ValueError) as e:
            log.error(f"entrypoint {self.name}: HTTP/3 certificate reload failed, keeping the previous one: {e}")

    def gone(self, conn: H3Server) -> None:
        self.connections.discard(conn)
        if self.closing and not self.connections:
            self.listener.close()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.reload in self.store.on_reload:
            self.store.on_reload.remove(self.reload)
        for conn in list(self.connections):
            conn.close_if_idle()
        if not self.connections:
            self.listener.close()
