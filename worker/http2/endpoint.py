"""What the HTTP/2 server side (``http2/server.py``) and upstream side (``upstream/http2.py``) share: an ``h2`` state
machine on an asyncio transport with flow-controlled sending.

``H2Endpoint`` owns the ``h2.connection.H2Connection`` and the per-stream *outboxes*: DATA a stream wants to
send beyond its flow-control window waits there (never in the transport), and is pumped out as the peer's
WINDOW_UPDATEs arrive. So a stream whose reader is slow only stalls itself; every other stream keeps moving.
An outbox that holds more than ``HIGH_WATER`` bytes pauses its *source* (the upstream connection or stream that
produces the bytes) until it drains below ``LOW_WATER``.

Invariants:
- Frames leave only through ``flush()``, which callers run after each batch of work: it writes once per event
  loop turn, so the frames of every stream answered in one turn leave in one write (a write syscall costs more
  than all the framing of a small response). Before closing the transport, ``flush_now()`` writes at once.
- ``end_stream`` requested while bytes are still queued is deferred until the outbox drains; trailers likewise.
- DATA is queued by ``send_data`` and framed by ``flush_now`` (``pump``), so when the end of a stream is known in
  the same turn (a small response), its last DATA frame carries END_STREAM instead of an empty frame after it.
- Every DATA byte received is eventually acknowledged (``ack``) — immediately when it is dropped, after it was
  forwarded otherwise — so the connection window never leaks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

import h2.connection
import h2.events
import h2.exceptions

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class Source(Protocol):
    """Whatever produces the bytes of an outbox: paused while the outbox is over its high water mark."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Outbox:
    """DATA of one stream waiting for flow-control window."""

    __slots__ = ("chunks", "size", "end", "trailers", "source", "paused", "done")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.end = False                       # END_STREAM once the chunks are out
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.source: Source | None = None
        self.paused = False
        self.done = False                      # END_STREAM sent (or the stream was reset)


class H2Endpoint:
    """Base of both HTTP/2 sides (an asyncio protocol); subclasses make ``self.conn`` and handle its events."""

    def __init__(self) -> None:
        self.conn: h2.connection.H2Connection = None  # type: ignore[assignment]
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.outboxes: dict[int, Outbox] = {}
        self.closed = False
        self.flush_scheduled = False
        self.queued: dict[int, Outbox] = {}    # outboxes given DATA or an end since the last flush

    def eof_received(self) -> None:
        """The peer half-closed: None, so the transport closes (an HTTP/2 peer that stops sending is done)."""
        return None

    def flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_now)

    def flush_now(self) -> None:
        self.flush_scheduled = False
        if self.queued:
            queued, self.queued = self.queued, {}
            for stream_id, box in queued.items():
                if not box.done:
                    self.pump(stream_id, box)
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def outbox(self, stream_id: int) -> Outbox:
        box = self.outboxes.get(stream_id)
        if box is None:
            box = self.outboxes[stream_id] = Outbox()
        return box

    def send_data(self, stream_id: int, data: bytes) -> None:
        box = self.outbox(stream_id)
        if box.done or not data:
            return
        box.chunks.append(data)
        box.size += len(data)
        self.queued[stream_id] = box
        self.flush()

    def end_stream(self, stream_id: int, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        box = self.outbox(stream_id)
        if box.done:
            return
        box.end = True
        box.trailers = trailers
        self.queued[stream_id] = box
        self.flush()

    def pump(self, stream_id: int, box: Outbox) -> None:
        """Send as much of ``box`` as the windows allow; finish the stream when it is empty and ended (on its
        last DATA frame when there are no trailers). Pauses the source while too much is left waiting."""
        conn = self.conn
        chunks = box.chunks
        try:
            while chunks:
                window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk = chunks[0]
                if len(chunk) <= window:
                    chunks.popleft()
                else:
                    chunks[0] = chunk[window:]
                    chunk = chunk[:window]
                box.size -= len(chunk)
                last = not chunks and box.end and not box.trailers
                conn.send_data(stream_id, chunk, end_stream=last)
                if last:
                    box.done = True
                    self.outboxes.pop(stream_id, None)
            if not chunks and box.end and not box.done:
                box.done = True
                self.outboxes.pop(stream_id, None)
                if box.trailers:
                    conn.send_headers(stream_id, box.trailers, end_stream=True)
                else:
                    conn.end_stream(stream_id)
        except h2.exceptions.ProtocolError:  # StreamClosedError too: e.g. the client reset it in this same batch
            box.done = True
            self.outboxes.pop(stream_id, None)
        if box.source is not None:
            if box.paused:
                if box.size < LOW_WATER:
                    box.paused = False
                    box.source.resume_reading()
            elif box.size > HIGH_WATER and not box.done:
                box.paused = True
                box.source.pause_reading()

    def pump_all(self) -> None:
        for stream_id, box in list(self.outboxes.items()):
            self.pump(stream_id, box)

    def window_changed(self, event: h2.events.WindowUpdated | h2.events.RemoteSettingsChanged) -> None:
        """The peer opened a window (one stream's, or the connection's / all initial windows via SETTINGS):
        send what now fits."""
        if isinstance(event, h2.events.WindowUpdated) and event.stream_id:
            box = self.outboxes.get(event.stream_id)
            if box is not None:
                self.pump(event.stream_id, box)
        else:
            self.pump_all()

    def drop_outbox(self, stream_id: int) -> None:
        box = self.outboxes.pop(stream_id, None)
        if box is not None:
            box.done = True

    def ack(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            try:
                self.conn.acknowledge_received_data(size, stream_id)
            except h2.exceptions.ProtocolError:
                pass  # the connection is closing

    def reset(self, stream_id: int, code: int) -> None:
        self.drop_outbox(stream_id)
        try:
            self.conn.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # already closed on the wire

    def pause_writing(self) -> None:  # the peer reads slowly: stop every source feeding this connection
        for box in self.outboxes.values():
            if not box.paused and box.source is not None:
                box.paused = True
                box.source.pause_reading()

    def resume_writing(self) -> None:
        for box in self.outboxes.values():
            if box.paused and box.size < LOW_WATER and box.source is not None:
                box.paused = False
                box.source.resume_reading()


def header_value(headers: Any, name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None
