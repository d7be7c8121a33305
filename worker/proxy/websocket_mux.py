"""WebSocket multiplexing (``websocket-mux``): many logical channels over one client WebSocket, each routed like
a request of its own to its own backend WebSocket. The framing is ``shared/wsmux.py``'s; the manual page
(docs/protocols/websocket-multiplexing.md) is the contract.

How a connection gets here: the ``websocket-mux`` middleware sees an HTTP/1.1 upgrade offering the
``a3s-mux.v1`` subprotocol and makes its ``MuxService`` the exchange's service; ``exchange.start`` hands such an
exchange to ``MuxService.accept`` instead of picking a backend. The gateway answers the 101 itself and the client
connection's protocol becomes a ``MuxConnection``.

Each ``open`` is a synthetic ``GET`` upgrade request (its path, its headers, Host defaulting to the connection's)
run through ``exchange.route`` and ``exchange.start`` with its ``Channel`` as the Downstream: routing, the
request phase of the matched router's chain (auth, ip-allow, rate limits apply per channel) and backend picking
exist once. A WebSocket channel then opens its own WebSocket to the backend (``mux_channel.py``); an HTTP
channel (``"kind": "http"``) is an ordinary ``GET`` on a pooled connection (``upstream.http1``), its response
body streamed to the client as binary data, its end a ``close``.

Invariants:
- Flow control is per channel and per direction, counted in payload bytes: a sender may send a data message on
  a channel only while its credit there is positive, and the message's payload length is subtracted. The
  gateway grants the client credit back once the bytes are written to a backend whose write buffer is below
  ``window``; a stalled backend stops the grants for its channel only. Towards the client, the gateway stops
  reading a channel's backend while the client's credit for it is used up (or the client's socket pushes back).
  So one slow channel never stops the connection being read for the others.
- Bytes held for a channel (waiting for the backend's handshake, in its write buffer, waiting for client credit)
  stay under ``max_channel_buffer`` and, for the connection, under ``max_buffered_bytes``; past either, the
  channel that pushed is ended with ``error`` 413. A client that keeps to its credit never gets there.
- A channel ends exactly once (``Channel.end``): its exchange is accounted, its backend released and its
  connection closed; its id can then be opened again. The mux, like a tunnel, belongs to the worker, not to a
  generation: a reload keeps it, and channels opened later route with the new config.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...shared.config.schema import header_name_error, header_value_error
from ...shared.wsmux import SUBPROTOCOL, FramingError, control, is_control, parse_control, split_binary, split_text
from .. import exchange
from ..exchange import Exchange, Fields
from ..runtime import Service
from . import ws_frames as frames
from .mux_channel import Channel, field

if TYPE_CHECKING:
    from ..limits import Limits

# what a channel's own headers may not set: the gateway's handshake and framing fields
_NOT_FORWARDED = frozenset((b"connection", b"upgrade", b"sec-websocket-key", b"sec-websocket-version",
                            b"sec-websocket-extensions", b"sec-websocket-protocol", b"sec-websocket-accept"))
MAX_CREDIT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class MuxLimits:
    """A ``websocket-mux`` middleware's limits (docs/reference: ``middlewares.websocket-mux``)."""

    max_channels: int
    window: int
    max_channel_buffer: int
    max_buffered_bytes: int
    max_message_bytes: int


class MuxService(Service):
    """The service a mux upgrade is given: the gateway answers it and multiplexes (``exchange.start``)."""

    def __init__(self, *args: Any, limits: MuxLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def accept(self, ex: Exchange, client: Any) -> None:
        """Answer the upgrade with 101 ``a3s-mux.v1`` and turn the client connection into a ``MuxConnection``."""
        key = field(ex.raw, b"sec-websocket-key")
        if key is None or field(ex.raw, b"sec-websocket-version") != b"13":
            return client.answer(ex, exchange.error_for(ex, 400, "a WebSocket upgrade needs Sec-WebSocket-Key and "
                                                                  "Sec-WebSocket-Version: 13"))
        accept = frames.accept_key(key.strip())
        ex.resp_started = True
        ex.status = 101
        client.worker.connections.discard(client)
        client.closed = True                   # the ClientProtocol is done; the mux owns the connection
        mux = MuxConnection(client, ex, self.limits)  # type: ignore[arg-type]
        client.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: " +
                               SUBPROTOCOL.encode() + b"\r\n\r\n")
        # after the HTTP/1.1 parser's upgrade handling, which pauses reading and keeps the bytes after the head
        client.worker.loop.call_soon(mux.start)


def offers_mux(raw: Fields) -> bool:
    """Whether an upgrade request lists ``a3s-mux.v1`` in Sec-WebSocket-Protocol."""
    for name, value in raw:
        if name.lower() == b"sec-websocket-protocol" and SUBPROTOCOL.encode() in (
                v.strip() for v in value.split(b",")):
            return True
    return False


class MuxConnection(asyncio.Protocol):
    """The client's WebSocket after the 101: control messages, data messages per channel, ping/pong, close."""

    def __init__(self, client: Any, ex: Exchange, limits: MuxLimits) -> None:
        self.client = client
        self.worker = client.worker
        self.entrypoint = client.entrypoint
        self.ex = ex
        self.limits = limits
        self.transport: asyncio.Transport = client.transport
        self.reader = frames.FrameReader(masked=True, max_message=limits.max_message_bytes)
        self.channels: dict[int, Channel] = {}
        self.grants: set[Channel] = set()      # channels that took data in this read: credit to give back
        self.last_active = self.worker.now
        self.closed = False
        self.write_paused = False

    def start(self) -> None:
        ex = self.ex
        pending = b"".join(ex.pending) if ex.pending else b""
        ex.pending = None
        if self.transport.is_closing():        # the client left meanwhile: its ClientProtocol accounted it
            return
        self.transport.set_protocol(self)
        self.worker.connections.add(self)
        limits = self.limits
        self.send_control("hello", version=1, window=limits.window, max_channels=limits.max_channels,
                          max_message_bytes=limits.max_message_bytes)
        if pending:
            self.data_received(pending)
        if not self.closed:
            self.transport.resume_reading()

    # -- the client's bytes
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = self.worker.now
        try:
            messages = self.reader.feed(data)
            for opcode, payload in messages:
                if self.closed:
                    return
                self._message(opcode, payload)
        except frames.ProtocolError as e:
            return self.close(e.code, e.reason)
        except FramingError as e:
            return self.close(1008, str(e))
        grants = self.grants
        if grants:
            self.grants = set()
            for channel in grants:
                channel.grant()

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == frames.BINARY:
            ch, data = split_binary(payload)
            self._data(ch, frames.BINARY, data)
        elif opcode == frames.TEXT:
            if is_control(payload):
                self._control(parse_control(payload))
            else:
                ch, data = split_text(payload)
                self._data(ch, frames.TEXT, data)
        elif opcode == frames.PING:
            self.write(frames.encode(frames.PONG, payload))
        elif opcode == frames.CLOSE:
            self.close(frames.parse_close(payload)[0], "")

    def _data(self, ch: int, opcode: int, payload: bytes) -> None:
        channel = self.channels.get(ch)
        if channel is not None:                # else: it just ended, the message crossed its end: dropped
            channel.forward(opcode, payload)

    def _control(self, msg: dict[str, Any]) -> None:
        op, ch = msg["op"], msg.get("ch")
        if op not in ("open", "close", "credit"):
            return self.send_control("error", 0, status=400, message=f"unknown op {op!r}")
        if not ch:
            return self.send_control("error", 0, status=400, message=f"'{op}' needs a 'ch' from 1 up")
        if op == "open":
            return self._open(ch, msg)
        channel = self.channels.get(ch)
        if channel is None:
            return                             # it ended meanwhile
        if op == "close":
            code, reason = msg.get("code", 1000), msg.get("reason", "")
            if code.__class__ is not int or not 1000 <= code <= 4999 or not isinstance(reason, str):
                return channel.error(400, "'code' is a close code (1000-4999) and 'reason' a string")
            return channel.close_by_client(code, reason)
        n = msg.get("bytes")
        if n.__class__ is not int or not 0 <= n <= MAX_CREDIT:
            return channel.error(400, f"'bytes' of a credit is an integer in 0..{MAX_CREDIT}")
        channel.credit(n)

    def _open(self, ch: int, msg: dict[str, Any]) -> None:
        if ch in self.channels:
            return self.send_control("error", 0, status=409, message=f"channel {ch} is already open")
        if len(self.channels) >= self.limits.max_channels:
            return self.send_control("error", ch, status=429,
                                     message=f"too many channels (max_channels = {self.limits.max_channels})")
        problem, path, fields, protocols = _open_request(msg)
        kind = msg.get("kind", "websocket")
        if kind not in ("websocket", "http"):
            problem = "'kind' is 'websocket' or 'http'"
        if problem is not None:
            return self.send_control("error", ch, status=400, message=problem)
        channel = self.channels[ch] = Channel(self, ch, kind == "websocket")
        channel.open(path, fields, protocols)

    # -- to the client
    def write(self, frame: bytes) -> None:
        if not self.closed:
            self.transport.write(frame)

    def send_control(self, op: str, ch: int | None = None, **fields: Any) -> None:
        self.write(frames.encode(frames.TEXT, control(op, ch, **fields).encode()))

    def pause_writing(self) -> None:
        self.write_paused = True
        for channel in self.channels.values():
            channel.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        for channel in list(self.channels.values()):
            channel.update_reading()

    # -- the end
    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket (``code`` to the client) and every channel."""
        if self.closed:
            return
        self.write(frames.encode(frames.CLOSE, frames.close_payload(code, reason)))
        self.closed = True
        self._end_channels()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end_channels()

    def _end_channels(self) -> None:
        for channel in list(self.channels.values()):
            channel.end(1001, "the multiplexed connection closed")
        self.worker.connections.discard(self)
        if not self.ex.counted:
            self.client.finish(self.ex)

    # -- what the worker's connection set asks (limits.Connection)
    def sweep(self, now: float, limits: Limits) -> None:
        if self.last_active < now - limits.idle_timeout:
            self.close(1001, "idle timeout")

    def close_if_idle(self) -> bool:
        self.close(1001, "going away")
        return True


def _open_request(msg: dict[str, Any]) -> tuple[str | None, bytes, Fields, list[str]]:
    """(problem, path, header fields, subprotocols) of an ``open``; a problem names what is wrong."""
    path, headers, protocols = msg.get("path"), msg.get("headers", {}), msg.get("protocols", [])
    if not isinstance(path, str) or not path.startswith("/"):
        return "'path' is a string starting with '/'", b"", [], []
    if not isinstance(headers, dict):
        return "'headers' is an object of header names to a string or a list of strings", b"", [], []
    if not isinstance(protocols, list) or not all(isinstance(p, str) and not header_name_error(p)
                                                  for p in protocols):
        return "'protocols' is a list of subprotocol names", b"", [], []
    if SUBPROTOCOL in protocols:
        return f"a channel cannot itself be {SUBPROTOCOL}", b"", [], []
    fields: Fields = []
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        problem = header_name_error(name)
        for v in values:
            problem = problem or (header_value_error(v) if isinstance(v, str) else "header values are strings")
        if problem:
            return f"header {name!r}: {problem}", b"", [], []
        if name.lower().encode() not in _NOT_FORWARDED:
            fields += [(name.encode(), v.encode()) for v in values]
    return None, path.encode(), fields, protocols
