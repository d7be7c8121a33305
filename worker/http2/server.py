"""``H2Server``: the server side of one HTTP/2 connection (``h2`` library), one ``Stream`` per request.

A stream carries an ``Exchange``: ``exchange.route`` and ``exchange.start`` route it, run the middleware chain
and pick its backend exactly as for HTTP/1.1; ``stream.py`` is its ``Downstream``.

Invariants:
- A slow stream stalls only itself: response bytes beyond the client's window wait in the stream's outbox,
  which pauses that stream's upstream (``endpoint.py``).
- Limits: ``MAX_CONCURRENT_STREAMS`` and ``MAX_HEADER_LIST_SIZE`` are advertised and enforced by ``h2``; a
  client that resets more than ``RESET_LIMIT`` streams within ``RESET_WINDOW`` seconds (rapid reset,
  CVE-2023-44487) gets GOAWAY(ENHANCE_YOUR_CALM) and is disconnected.
- A malformed request or trailers (``fields.py``) resets that stream with PROTOCOL_ERROR; nothing of it is
  forwarded.
- No input crashes the worker: protocol errors end the connection with GOAWAY, anything unexpected is
  logged and the connection aborted.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from ...shared import log as gwlog
from ..hop_headers import forwarded_const
from .endpoint import H2Endpoint
from .field_coding import install_hpack
from .fields import valid_trailers
from .stream import Stream, serve_request

if TYPE_CHECKING:
    from ..limits import Limits
    from ..process import Worker

log = gwlog.get("worker.http2")

MAX_CONCURRENT_STREAMS = 256
MAX_HEADER_LIST_SIZE = 64 * 1024
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
RESET_LIMIT = 200
RESET_WINDOW = 10.0


class _LengthCheckedHere(h2.stream.H2Stream):
    """A request stream whose content-length the gateway checks itself (``fields.py``, ``Stream.request_data``): h2's
    own check raises out of ``receive_data`` and so ends the whole connection, where RFC 9113 §8.1.1 makes a bad
    or unmet content-length an error of that stream only."""

    def _initialize_content_length(self, headers: object) -> None:
        self._expected_content_length = None


class _ServerConnection(h2.connection.H2Connection):
    def _begin_new_stream(self, stream_id: int, allowed_ids: object) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)  # type: ignore[arg-type]
        stream.__class__ = _LengthCheckedHere
        return stream


class H2Server(H2Endpoint):
    """The server side of one HTTP/2 connection."""

    client: tuple[str, int] | None = None     # the client a trusted PROXY protocol header named
    stream_class = Stream
    websocket = True                          # extended CONNECT (RFC 8441) for WebSocket
    websocket_refusal = "Only the websocket protocol is supported"

    def __init__(self, worker: Worker, entrypoint: str, scheme: bytes, port: int) -> None:
        super().__init__()
        self.worker = worker
        self.entrypoint = entrypoint
        self.scheme = scheme
        self.port = port
        # h2's checks of received fields are off: fields.read_request makes them (and more) in the pass
        # over the fields the gateway makes anyway; h2 still checks content-length against the DATA received.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None, validate_outbound_headers=False,
                                           normalize_outbound_headers=False, validate_inbound_headers=False,
                                           normalize_inbound_headers=False)
        self.conn = _ServerConnection(config=config)
        install_hpack(self.conn)
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,     # WebSocket over HTTP/2 (RFC 8441)
        })
        self.streams: dict[int, Stream] = {}
        self.last_active = worker.now
        self.client_ip = ""
        self.peer = b""
        self.fwd_const = b""
        self.alt_svc = worker.alt_svc.get(entrypoint)     # this entrypoint's HTTP/3 side (http3/__init__.py)
        self.resets = 0
        self.reset_window = worker.now
        self.goaway = False
        self.batch: list[h2.events.Event] = []  # the events of the read being handled

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client_ip, self.peer, self.fwd_const = forwarded_const(transport, self.scheme, self.port, self.client)
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
        self.batch = events
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
                if valid_trailers(event.headers):
                    stream.request_ended(event.headers)
                else:
                    self.malformed(event.stream_id)
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
    def malformed(self, stream_id: int) -> None:
        """A malformed request or trailers: a stream error (RFC 9113 §8.1.1), the other streams go on."""
        self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.cancel()

    def _request(self, event: h2.events.RequestReceived) -> None:
        if self.worker.draining:
            self.reset(event.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        serve_request(self, event.stream_id, event.headers, event.stream_ended is not None, event)

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool = False) -> bool:
        """A HEADERS block on a stream; False when the client reset it meanwhile."""
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.ProtocolError:
            return False
        return True

    def end_stream(self, stream_id: int, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """The response is complete, though its last bytes may still wait for the client's window: its source
        feeds the outbox no more, and is let go (resumed if paused, so an HTTP/2 backend gets its held window
        back). An HTTP/1.1 backend connection is back in its pool by now: paused through this outbox (``pump``
        past the high water mark, ``pause_writing``), it would stay paused once the stream is reset or the client
        leaves, and the next request sent on it would get no answer."""
        super().end_stream(stream_id, trailers)
        box = self.outboxes.get(stream_id)
        if box is not None and box.source is not None:
            if box.paused:
                box.paused = False
                box.source.resume_reading()
            box.source = None

    def ends_empty(self, event: h2.events.RequestReceived) -> bool:
        """Whether this read already ends the request with no body bytes (HEADERS, then an empty DATA frame with
        END_STREAM): the request then goes to an HTTP/1.1 backend without a body, not as an empty chunked one."""
        batch = self.batch
        for later in batch[batch.index(event) + 1:]:
            if getattr(later, "stream_id", None) == event.stream_id:
                if isinstance(later, h2.events.StreamEnded):
                    return True
                if not isinstance(later, h2.events.DataReceived) or later.data:
                    return False
        return False

    def sweep(self, now: float, limits: Limits) -> None:
        """The worker's sweep: the body timeout per stream, the idle timeout of a connection without streams."""
        if self.streams:
            self.sweep_bodies(now, now - limits.body_timeout)
        elif self.last_active < now - limits.idle_timeout:
            self.close_if_idle()

    def sweep_bodies(self, now: float, body_cut: float) -> None:
        """The worker's sweep: streams whose client sent no body bytes since ``body_cut`` while the gateway was
        reading time out (``Stream.body_timed_out``). Progress is read from ``req_bytes`` here, so DATA frames
        pay nothing for it. Time the gateway holds a body back (an upstream pushing back, bytes not yet
        acknowledged while a backend connection is made) does not count. gRPC streams are left alone: a client-
        or bidirectional-streaming call may rightly pause for longer; its deadline is the client's and the backend's."""
        stalled = []
        for stream in self.streams.values():
            ex = stream.ex
            if ex.req_done or stream.grpc or ex.upgrade or stream.hold or stream.unacked or ex.local is not None:
                stream.body_mark = -1
            elif stream.body_mark != ex.req_bytes:
                stream.body_mark = ex.req_bytes
                stream.body_since = now
            elif stream.body_since < body_cut:
                stalled.append(stream)
        for stream in stalled:
            stream.body_timed_out()

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
