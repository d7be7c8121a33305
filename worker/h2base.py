"""What the HTTP/2 server side (``http2.py``) and client side (``upstream_h2.py``) share: an ``h2`` state
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

HPACK (``install_hpack``): the pure-Python ``hpack`` coder is a large part of a stream's cost, so both sides
replace it. ``FieldEncoder`` never uses the dynamic table (as nginx does): each field is a static-table index or a
literal without indexing, which depends on nothing but the field, so encoded fields are kept and reused by every
connection. ``RepeatDecoder`` remembers small header blocks that left its table unchanged (what a client repeating
a request sends once its fields are indexed) with the table version they were decoded against.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

import h2.connection
import h2.events
import h2.exceptions
import hpack
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.struct import HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

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


class H2Endpoint(asyncio.Protocol):
    """Base of both HTTP/2 sides; subclasses handle the events of ``self.conn``."""

    conn: h2.connection.H2Connection

    def __init__(self) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.outboxes: dict[int, Outbox] = {}
        self.closed = False
        self.flush_scheduled = False
        self.queued: dict[int, Outbox] = {}    # outboxes given DATA or an end since the last flush

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


_STATIC = HeaderTable.STATIC_TABLE_MAPPING     # name -> (index of its first entry, {value: index})
_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_FIELDS: dict[tuple[bytes, bytes], bytes] = {}
_FIELDS_MAX = 4096
_FIELD_VALUE_MAX = 128                          # longer values (cookies, tokens) are encoded every time
_NOT_KEPT = frozenset((b"set-cookie", b"cookie", b"authorization", b"proxy-authorization"))


def _string(data: bytes) -> bytes:
    """An HPACK string literal: Huffman-coded when that is shorter."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        length = encode_integer(len(coded), 7)
        length[0] |= 0x80
        return bytes(length) + coded
    return bytes(encode_integer(len(data), 7)) + data


def _field(name: bytes, value: bytes, never_indexed: bool) -> bytes:
    """One field without the dynamic table: a static index, or a literal "without indexing" ("never indexed"
    for a sensitive field), its name a static index where the table has the name."""
    entry = _STATIC.get(name)
    if entry is None:
        return (b"\x10" if never_indexed else b"\x00") + _string(name) + _string(value)
    index = entry[1].get(value)
    if index is not None:
        return bytes((0x80 | index,))          # static indexes are < 127: one byte
    prefix = encode_integer(entry[0], 4)
    if never_indexed:
        prefix[0] |= 0x10
    return bytes(prefix) + _string(value)


class FieldEncoder(hpack.Encoder):
    """An HPACK encoder that leaves the dynamic table empty, so a field always encodes to the same bytes: they
    are computed once per field and kept (module-wide, bounded; long and credential-bearing values are not).
    It costs some bytes on the wire per response and saves most of the encoding time."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        block = []
        table = self.header_table
        if table.resized:                      # the peer changed SETTINGS_HEADER_TABLE_SIZE: say we follow it
            block.append(self._encode_table_size_change())
            table.resized = False
        fields = _FIELDS
        for header in headers:
            sensitive = header.__class__ is NeverIndexedHeaderTuple
            encoded = None if sensitive else fields.get(header)
            if encoded is None:
                name, value = header[0], header[1]
                encoded = _field(name, value, sensitive)
                if not sensitive and len(value) <= _FIELD_VALUE_MAX and name not in _NOT_KEPT:
                    if len(fields) >= _FIELDS_MAX:
                        fields.clear()
                    fields[(name, value)] = encoded
            block.append(encoded)
        return b"".join(block)


class _VersionedTable(HeaderTable):
    """A decoder's table that counts its changes, so a decoded block can be known to still decode the same."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.version += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class RepeatDecoder(hpack.Decoder):
    """An HPACK decoder that remembers the blocks that left its table unchanged (table references only, as a
    client repeating a request sends): the same bytes against the same table version decode to the same list.
    Only small blocks are kept, a few per connection, and none once the table changed (their fields are then
    all in the current table: nothing evicted is kept alive)."""

    BLOCKS_MAX = 8
    BLOCK_MAX_BYTES = 256
    BLOCK_MAX_FIELDS = 32

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self.header_table = _VersionedTable()
        self.blocks: dict[bytes, tuple[int, int, list[HeaderTuple]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:  # type: ignore[override]
        table = self.header_table
        version = table.version
        hit = self.blocks.get(data)
        if hit is not None and hit[0] == version and hit[1] == self.max_header_list_size and raw:
            self._assert_valid_table_size()    # the limit may have shrunk since (SETTINGS acknowledged)
            return list(hit[2])
        headers = list(super().decode(data, raw))
        if table.version != version:
            self.blocks.clear()
        elif raw and len(data) <= self.BLOCK_MAX_BYTES and len(headers) <= self.BLOCK_MAX_FIELDS:
            if len(self.blocks) >= self.BLOCKS_MAX:
                self.blocks.clear()
            self.blocks[bytes(data)] = (version, self.max_header_list_size, headers)
            return list(headers)
        return headers


def install_hpack(conn: h2.connection.H2Connection) -> None:
    """Give ``conn`` the cheaper coders, before it sends or receives anything."""
    decoder = RepeatDecoder(conn.decoder.max_header_list_size)
    decoder.max_allowed_table_size = conn.decoder.max_allowed_table_size
    conn.decoder = decoder
    conn.encoder = FieldEncoder()


def header_value(headers: Any, name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None
