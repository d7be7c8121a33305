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
exist once. A WebSocket channel then opens its own WebSocket to the backend (``ChannelBackend``); an HTTP
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
import base64
import hashlib
import os
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
import orjson

from ...shared.config.schema import header_name_error, header_value_error
from ...shared.errors import BadUpstreamResponse, ConnectError, UpstreamError, UpstreamTimeout
from ...shared.wsmux import (
    SUBPROTOCOL,
    FramingError,
    binary,
    control,
    is_control,
    parse_control,
    split_binary,
    split_text,
    text,
)
from .. import exchange, proxy_protocol
from ..exchange import Exchange, Fields
from ..http1_request import Refused, read_request
from ..responses import Answer
from ..runtime import Service
from ..upstream import http1 as upstream_http1
from ..upstream.http1 import request_head
from .websocket import UPGRADE_HEAD
from .ws_frames import BINARY, CLOSE, PING, PONG, TEXT, FrameReader, ProtocolError, close_payload, encode, parse_close

if TYPE_CHECKING:
    from ..limits import Limits
    from ..upstream.http1 import UpstreamProtocol

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"       # RFC 6455 §1.3
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


@dataclass
class MuxService(Service):
    """The service a mux upgrade is given: the gateway answers it and multiplexes (``exchange.start``)."""

    limits: MuxLimits | None = None

    def accept(self, ex: Exchange, client: Any) -> None:
        """Answer the upgrade with 101 ``a3s-mux.v1`` and turn the client connection into a ``MuxConnection``."""
        key = _field(ex.raw, b"sec-websocket-key")
        if key is None or _field(ex.raw, b"sec-websocket-version") != b"13":
            return client.answer(ex, exchange.error_for(ex, 400, "a WebSocket upgrade needs Sec-WebSocket-Key and "
                                                                  "Sec-WebSocket-Version: 13"))
        accept = base64.b64encode(hashlib.sha1(key.strip() + _GUID).digest())
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


def _field(raw: Fields, name: bytes) -> bytes | None:
    return next((v for n, v in raw if n.lower() == name), None)


class MuxConnection(asyncio.Protocol):
    """The client's WebSocket after the 101: control messages, data messages per channel, ping/pong, close."""

    def __init__(self, client: Any, ex: Exchange, limits: MuxLimits) -> None:
        self.client = client
        self.worker = client.worker
        self.entrypoint = client.entrypoint
        self.ex = ex
        self.limits = limits
        self.transport: asyncio.Transport = client.transport
        self.reader = FrameReader(masked=True, max_message=limits.max_message_bytes)
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
        except ProtocolError as e:
            return self.close(e.code, e.reason)
        except FramingError as e:
            return self.close(1008, str(e))
        grants = self.grants
        if grants:
            self.grants = set()
            for channel in grants:
                channel.grant()

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == BINARY:
            ch, data = split_binary(payload)
            self._data(ch, BINARY, data)
        elif opcode == TEXT:
            if is_control(payload):
                self._control(parse_control(payload))
            else:
                ch, data = split_text(payload)
                self._data(ch, TEXT, data)
        elif opcode == PING:
            self.write(encode(PONG, payload))
        elif opcode == CLOSE:
            self.close(parse_close(payload)[0], "")

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
        self.write(encode(TEXT, control(op, ch, **fields).encode()))

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
        self.write(encode(CLOSE, close_payload(code, reason)))
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


class Channel:
    """One logical channel: the Downstream of its exchange and the flow-control state of both directions."""

    protocol = b"HTTP/1.1"

    def __init__(self, mux: MuxConnection, ch: int, websocket: bool) -> None:
        client = mux.client
        self.mux = mux
        self.id = ch
        self.websocket = websocket             # else an HTTP channel: a GET whose response body streams
        self.worker = mux.worker
        self.entrypoint = mux.entrypoint
        self.client_ip: str = client.client_ip
        self.peer: bytes = client.peer
        self.scheme: bytes = client.scheme
        self.port: int = client.port
        self.fwd_const: bytes = client.fwd_const
        self.ex: Exchange = None  # type: ignore[assignment]
        self.backend: ChannelBackend | None = None
        self.up = False                        # the backend's 101 arrived
        self.ended = False
        self.closing = False                   # the backend closed: its close waits behind data in ``outq``
        window = mux.limits.window
        self.client_credit = window                # credit the client gave: payload bytes the gateway may send it
        self.granted = window              # credit the gateway gave: payload bytes the client may send
        self.owed = 0                          # bytes passed to the backend, not yet granted back
        self.held: list[bytes] = []            # frames for the backend before its handshake completed
        self.held_bytes = 0
        self.outq: deque[tuple[bytes, int]] = deque()   # frames for the client waiting for its credit
        self.outq_bytes = 0
        self.backend_paused = False            # the backend's write buffer is past ``window``
        self.reading_paused = False

    @property
    def peername(self) -> tuple[str, int] | None:
        return self.mux.client.peername

    @property
    def sockname(self) -> tuple[str, int] | None:
        return self.mux.client.sockname

    # -- the channel's request
    def open(self, path: bytes, fields: Fields, protocols: list[str]) -> None:
        ex = self.ex = Exchange()
        ex.method = b"GET"
        ex.conn = self
        ex.http11 = ex.req_done = True
        ex.upgrade = self.websocket
        mux_ex = self.mux.ex
        if not any(n.lower() == b"host" for n, _ in fields):
            fields.insert(0, (b"Host", mux_ex.host))
        try:
            read_request(ex, fields, path, 0)
        except Refused as e:
            return self.error(*e.args)
        if protocols and self.websocket:
            ex.headers.append((b"Sec-WebSocket-Protocol", ", ".join(protocols).encode()))
        trusted = self.mux.client.xff_trusted
        ex.xff = ex.xff_in + b", " + self.peer if ex.xff_in is not None and trusted else self.peer
        reply = exchange.route(ex, self, fields)
        if reply is None:
            exchange.start(ex, self)
        elif reply.__class__ is Answer:
            self.answer(ex, reply)  # type: ignore[arg-type]
        else:
            self.worker.loop.create_task(self._resume(ex, reply))  # type: ignore[arg-type]

    async def _resume(self, ex: Exchange, pending: Awaitable[Answer | None]) -> None:
        try:
            reply = await pending
        except Exception:  # noqa: BLE001 — a middleware bug ends the channel with 500, never the connection
            reply = exchange.middleware_failed(ex)
        if self.ended:
            return
        if reply is None:
            exchange.start(ex, self)
        else:
            self.answer(ex, reply)

    # -- Downstream (what exchange.start and the backend side call)
    def current(self, ex: Exchange) -> bool:
        return not self.ended and self.ex is ex

    def connect_upstream(self, ex: Exchange) -> None:
        if ex.backend.h2:  # type: ignore[union-attr]
            return self.fail(ex, BadUpstreamResponse("Bad gateway: channels reach HTTP/1.1 backends only"))
        if not self.websocket:
            return upstream_http1.proxy(self, ex)
        self.worker.loop.create_task(self._connect(ex))

    async def _connect(self, ex: Exchange) -> None:
        pool = ex.backend.pool  # type: ignore[union-attr]
        key = base64.b64encode(os.urandom(16))
        try:
            _, up = await asyncio.wait_for(pool.open(lambda: ChannelBackend(self, key), pool.ssl),
                                           ex.service.connect_timeout)  # type: ignore[union-attr]
        except (TimeoutError, OSError) as e:
            return self.fail(ex, exchange.connect_error(e))
        if self.ended:
            up.transport.close()
            return exchange.release_backend(ex)
        self.backend = up
        up.transport.set_write_buffer_limits(high=self.mux.limits.window)
        proxy_protocol.send(up.transport, pool.proxy_version, self)
        head = request_head(ex, self)
        up.transport.write(head[:-2] + b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" +
                           UPGRADE_HEAD)
        timeout = ex.service.response_timeout  # type: ignore[union-attr]
        if timeout:
            self.worker.loop.call_later(timeout, self._handshake_timed_out, ex)

    def _handshake_timed_out(self, ex: Exchange) -> None:
        if not self.up and self.current(ex):
            self.fail(ex, UpstreamTimeout("Gateway timeout: the backend did not answer the WebSocket upgrade"))

    def answer(self, ex: Exchange, answer: Answer) -> None:
        """The channel's router answered without a backend (a middleware's reply, 404, 503, an @internal
        service): the client gets ``error`` with that status and the answer's message."""
        ex.status = answer.status
        try:
            message = orjson.loads(answer.body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            message = None
        self.error(answer.status, message if isinstance(message, str) else "answered without a backend")

    def fail(self, ex: Exchange, error: UpstreamError) -> None:
        exchange.passive_failure(ex, self.worker.now)
        exchange.release_backend(ex)
        self.answer(ex, exchange.error_for(ex, error.status, error.message))

    def finish(self, ex: Exchange, trailers: Fields | None = None) -> None:
        exchange.account(ex, self)
        exchange.release_backend(ex)
        if not self.websocket:                 # the response body is complete: the client gets close 1000
            self.backend_closed(1000, "")

    def abort(self, ex: Exchange) -> None:
        """An HTTP channel's response broke off mid-body."""
        exchange.release_backend(ex)
        self.backend_closed(1006, "the backend response broke off")

    def retry_later(self, ex: Exchange) -> None:
        exchange.retry_later(ex, self)

    # -- Downstream for an HTTP channel's pooled upstream connection (``upstream.http1``)
    def bind(self, ex: Exchange, up: UpstreamProtocol) -> None:
        ex.upstream = up
        up.bind(self, ex, ex.service.response_timeout)  # type: ignore[union-attr]

    def send_interim(self, status: int, reason: bytes, fields: Fields) -> None:
        pass                                   # 1xx heads have nowhere to go

    def send_head(self, ex: Exchange, status: int, reason: bytes, fields: Fields, length_known: bool,
                  end: bool = False) -> None:
        self.up = True
        headers: dict[str, str] = {}
        for name, value in fields:
            key = name.decode("latin-1").lower()
            v = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {v}" if key in headers else v
        self.mux.send_control("opened", self.id, status=status, headers=headers)

    def send_body(self, ex: Exchange, data: bytes) -> None:
        self.deliver(encode(BINARY, binary(self.id, data)), len(data))

    def flush(self) -> None:
        self.update_reading()                  # after each read of the upstream side

    def hold_body(self) -> None:
        pass                                   # an HTTP channel's request has no body

    release_body = hold_body

    # -- client to backend
    def forward(self, opcode: int, payload: bytes) -> None:
        if not self.websocket:
            return self.error(400, "an HTTP channel takes no data")
        if self.granted <= 0:
            return self.error(400, "data without credit (flow control)")
        n = len(payload)
        self.granted -= n
        self.ex.req_bytes += n
        frame = encode(opcode, payload, mask=True)
        if self.up:
            self.backend.transport.write(frame)  # type: ignore[union-attr]
            self.owed += n
            self.mux.grants.add(self)
        else:
            self.held.append(frame)
            self.held_bytes += n
        if self.buffered() > self.mux.limits.window:
            self._check_buffers()

    def buffered(self) -> int:
        """Bytes held for this channel: before the handshake, in the backend's write buffer, for the client."""
        backend = self.backend
        wbuf = backend.transport.get_write_buffer_size() if backend is not None and self.up else 0
        return self.held_bytes + wbuf + self.outq_bytes

    def _check_buffers(self) -> None:
        limits = self.mux.limits
        if self.buffered() > limits.max_channel_buffer:
            return self.error(413, f"channel buffer limit exceeded (max_channel_buffer = "
                                   f"{limits.max_channel_buffer})")
        if sum(c.buffered() for c in self.mux.channels.values()) > limits.max_buffered_bytes:
            self.error(413, f"connection buffer limit exceeded (max_buffered_bytes = {limits.max_buffered_bytes})")

    def grant(self) -> None:
        """Give the client back the credit its data used, unless the backend is not taking it."""
        if self.ended or not self.up or self.backend_paused or self.owed <= 0:
            return
        n, self.owed = self.owed, 0
        self.granted += n
        self.mux.send_control("credit", self.id, bytes=n)

    def close_by_client(self, code: int, reason: str) -> None:
        backend = self.backend
        if backend is not None and self.up:
            backend.transport.write(encode(CLOSE, close_payload(code, reason), mask=True))
        self.end(code, reason)

    # -- backend to client
    def opened(self, protocol: bytes | None) -> None:
        self.up = True
        ex = self.ex
        ex.resp_started = True
        ex.status = 101
        self.mux.send_control("opened", self.id, protocol=protocol.decode("latin-1") if protocol else None)
        if self.held:
            self.backend.transport.writelines(self.held)  # type: ignore[union-attr]
            self.owed += self.held_bytes
            self.held, self.held_bytes = [], 0
            self.grant()

    def deliver(self, frame: bytes, n: int) -> None:
        if not self.outq and self.client_credit > 0:
            self.client_credit -= n
            self.mux.write(frame)
        else:
            self.outq.append((frame, n))
            self.outq_bytes += n

    def credit(self, n: int) -> None:
        self.client_credit += n
        outq = self.outq
        while outq and (outq[0][1] == 0 or self.client_credit > 0):
            frame, size = outq.popleft()
            self.outq_bytes -= size
            self.client_credit -= size
            self.mux.write(frame)
        if self.closing and not outq:
            return self.end(1000, "")
        self.update_reading()

    def update_reading(self) -> None:
        """Read the backend only while the client has credit for it and its socket takes bytes."""
        source = self._source()
        if source is None or self.ended:
            return
        pause = self.client_credit <= 0 or bool(self.outq) or self.mux.write_paused
        if pause is not self.reading_paused:
            self.reading_paused = pause
            if pause:
                source.pause_reading()
            else:
                source.resume_reading()

    def _source(self) -> ChannelBackend | UpstreamProtocol | None:
        """What feeds the channel: its backend WebSocket, or the pooled connection its HTTP response comes on."""
        if self.websocket:
            return self.backend
        up = self.ex.upstream if self.ex is not None else None
        return up if up is not None and up.ex is self.ex else None

    def backend_closed(self, code: int, reason: str) -> None:
        """The backend's WebSocket ended: the client gets ``close`` after the data still queued for it."""
        if self.closing or self.ended:
            return
        self.closing = True
        self.outq.append((encode(TEXT, control("close", self.id, code=code, reason=reason).encode()), 0))
        self.credit(0)

    # -- the end
    def error(self, status: int, message: str) -> None:
        if self.ended:
            return
        if self.ex is not None and not self.ex.status:
            self.ex.status = status
        self.mux.send_control("error", self.id, status=status, message=message)
        backend = self.backend
        if backend is not None and self.up:
            backend.transport.write(encode(CLOSE, close_payload(1011, "channel error"), mask=True))
        self.end(1011, message)

    def end(self, code: int, reason: str) -> None:
        """The channel is over: free its id, close its backend, account its exchange."""
        if self.ended:
            return
        self.ended = True
        mux = self.mux
        if mux.channels.get(self.id) is self:
            del mux.channels[self.id]
        mux.grants.discard(self)
        backend = self.backend
        if backend is not None:
            if self.up and not self.closing and mux.closed:
                backend.transport.write(encode(CLOSE, close_payload(code, reason), mask=True))
            backend.transport.close()
        ex = self.ex
        if ex is not None:
            up = ex.upstream
            if up is not None and up.ex is ex:     # an HTTP response not read to its end: never reused
                up.abandon()
            exchange.account(ex, self)
            exchange.release_backend(ex)


class ChannelBackend(asyncio.Protocol):
    """A channel's connection to its backend: the upgrade handshake, then frames both ways."""

    def __init__(self, channel: Channel, key: bytes) -> None:
        self.channel = channel
        self.accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.headers: Fields = []
        self.reader: FrameReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.channel.backend_paused = True

    def resume_writing(self) -> None:
        channel = self.channel
        channel.backend_paused = False
        channel.grant()

    def data_received(self, data: bytes) -> None:
        channel = self.channel
        if channel.ended:
            return
        channel.mux.last_active = channel.worker.now
        if self.reader is not None:
            return self._frames(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._switch(data[e.args[0]:])
        except httptools.HttpParserError:
            self.transport.close()
            channel.fail(channel.ex, BadUpstreamResponse("Bad gateway: invalid upgrade response from backend"))

    def connection_lost(self, exc: Exception | None) -> None:
        channel = self.channel
        if channel.ended:
            return
        if not channel.up:
            channel.fail(channel.ex, ConnectError("Bad gateway: backend closed the connection"))
        else:
            channel.backend_closed(1006, "the backend connection was lost")

    # -- httptools callbacks (the upgrade response head)
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []
            return
        channel = self.channel
        if status != 101:                      # the backend refused the upgrade: the channel gets its status
            self.transport.close()
            channel.ex.status = status
            return channel.error(status, "the backend refused the WebSocket upgrade")
        accept = _field(self.headers, b"sec-websocket-accept")
        if accept is None or accept.strip() != self.accept or _field(self.headers, b"sec-websocket-extensions"):
            raise BadUpstreamResponse("the backend's WebSocket handshake answer is not valid")

    def _switch(self, rest: bytes) -> None:
        channel = self.channel
        if channel.ended:
            return
        self.reader = FrameReader(masked=False, max_message=channel.mux.limits.max_message_bytes)
        channel.opened(_field(self.headers, b"sec-websocket-protocol"))
        if rest:
            self._frames(rest)

    def _frames(self, data: bytes) -> None:
        channel = self.channel
        try:
            messages = self.reader.feed(data)  # type: ignore[union-attr]
        except ProtocolError as e:
            self.transport.write(encode(CLOSE, close_payload(e.code, e.reason), mask=True))
            return channel.backend_closed(1014 if e.code == 1002 else e.code, f"backend: {e.reason}")
        ch = channel.id
        ex = channel.ex
        for opcode, payload in messages:
            if opcode in (BINARY, TEXT):
                ex.resp_bytes += len(payload)
            if opcode == BINARY:
                channel.deliver(encode(BINARY, binary(ch, payload)), len(payload))
            elif opcode == TEXT:
                channel.deliver(encode(TEXT, text(ch, payload)), len(payload))
            elif opcode == PING:
                self.transport.write(encode(PONG, payload, mask=True))
            elif opcode == CLOSE:
                code, reason = parse_close(payload)
                self.transport.write(encode(CLOSE, close_payload(code), mask=True))
                channel.backend_closed(code, reason)
                break
        channel.update_reading()
