"""One channel of a multiplexed WebSocket (``websocket_mux.py``): the Downstream of the synthetic request its
``open`` made, the flow-control state of both directions, and its backend side — a WebSocket of the gateway's own
(``ChannelBackend``) or, for an HTTP channel, a pooled HTTP/1.1 connection (``upstream.http1``).

Invariants (the protocol page, docs/protocols/websocket-multiplexing.md, is the contract):
- The client may send while ``granted`` > 0; what it sent is granted back once written to a backend whose write
  buffer is below ``window`` (``grant``). The gateway sends the client data while ``client_credit`` > 0, queues
  the rest in ``outq`` and stops reading the backend meanwhile (``update_reading``).
- ``buffered()`` (held before the handshake + the backend's write buffer + ``outq``) stays under
  ``max_channel_buffer``, and the connection's sum under ``max_buffered_bytes``; past either: ``error`` 413.
- ``end`` runs once: the id is freed, the backend closed (an HTTP response not read to its end is abandoned,
  never reused), the exchange accounted and its backend released.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import httptools
import orjson

from ...shared.errors import BadUpstreamResponse, ConnectError, UpstreamError, UpstreamTimeout
from ...shared.wsmux import binary, control, text
from .. import exchange, proxy_protocol
from ..exchange import Exchange, Fields
from ..http1_request import Refused, read_request
from ..responses import Answer
from ..upstream import http1 as upstream_http1
from ..upstream.http1 import request_head
from .websocket import UPGRADE_HEAD
from .ws_frames import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    ProtocolError,
    accept_key,
    close_payload,
    encode,
    parse_close,
)

if TYPE_CHECKING:
    from ..upstream.http1 import UpstreamProtocol
    from .websocket_mux import MuxConnection


def field(raw: Fields, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lowercase) in ``raw``."""
    return next((v for n, v in raw if n.lower() == name), None)


class Channel:
    """One logical channel: the Downstream of its exchange and the flow-control state of both directions."""

    protocol = b"HTTP/1.1"
    alt_svc = None                             # a channel's responses are WebSocket messages: no Alt-Svc

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
        self.up = False                        # the backend's 101 (an HTTP channel: its response head) arrived
        self.ended = False
        self.closing = False                   # the backend closed: its close waits behind data in ``outq``
        window = mux.limits.window
        self.client_credit = window            # credit the client gave: payload bytes the gateway may send it
        self.granted = window                  # credit the gateway gave: payload bytes the client may send
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
        self.accept = accept_key(key)
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
        accept = field(self.headers, b"sec-websocket-accept")
        if accept is None or accept.strip() != self.accept or field(self.headers, b"sec-websocket-extensions"):
            raise BadUpstreamResponse("the backend's WebSocket handshake answer is not valid")

    def _switch(self, rest: bytes) -> None:
        channel = self.channel
        if channel.ended:
            return
        self.reader = FrameReader(masked=False, max_message=channel.mux.limits.max_message_bytes)
        channel.opened(field(self.headers, b"sec-websocket-protocol"))
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
