"""WebSocket over HTTP/2 (RFC 8441): an extended CONNECT stream (``:method CONNECT``, ``:protocol websocket``;
the gateway advertises ``SETTINGS_ENABLE_CONNECT_PROTOCOL``) proxied to an HTTP/1.1 WebSocket backend.

The stream is an ordinary exchange up to the backend, routed as the ``GET`` an HTTP/1.1 client would have sent
(``http2/fields.py``): the request phase of the router's chain answers it like any request, the balancer picks
the backend. Then ``connect()`` opens a fresh connection to it (never a pooled one: it will not come back) and
sends an HTTP/1.1 upgrade request with a ``Sec-WebSocket-Key`` of the gateway's own (RFC 8441 has none; the
backend's ``Sec-WebSocket-Accept`` is checked against it). Then:

- on ``101`` the client gets ``:status 200`` (with the backend's ``sec-websocket-protocol`` and
  ``-extensions``) and the stream becomes a tunnel: the stream's DATA goes to the backend as it is, the backend's
  bytes come back as DATA; WebSocket frames pass untouched. Client END_STREAM half-closes the backend
  connection; the backend's EOF ends the stream; a reset or a lost connection on either side ends the other.
- on any other status the backend refused the upgrade: its head and body are relayed and the stream ends.

Flow control holds end to end: the backend connection is the source of the stream's outbox (paused while the
client's window is used up), and a backend that does not read holds the client's DATA back (``Stream.hold_body``).
To the stream this tunnel is its HTTP/2 upstream (``ex.h2up``: ``send_body``/``end_body``/``cancel``), so
``Stream`` carries it without a path of its own. A tunnel belongs to the client's HTTP/2 connection, which
belongs to the worker, not to a config generation: a reload never closes it. The backend stays acquired for
the tunnel's life, as for HTTP/1.1 WebSockets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import TYPE_CHECKING

import httptools

from ...shared.errors import BadUpstreamResponse, ConnectError
from .. import exchange, proxy_protocol
from ..hop_headers import HOP_BY_HOP
from ..upstream.http1 import request_head
from .websocket import UPGRADE_HEAD

if TYPE_CHECKING:
    from ..exchange import Exchange, Fields
    from ..http2.stream import Stream

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"       # RFC 6455 §1.3
_NOT_RELAYED = HOP_BY_HOP | {b"sec-websocket-accept"}


def connect(front: Stream, ex: Exchange) -> None:
    front.worker.loop.create_task(_connect(front, ex))


async def _connect(front: Stream, ex: Exchange) -> None:
    pool = ex.backend.pool
    key = base64.b64encode(os.urandom(16))
    try:
        _, tunnel = await asyncio.wait_for(pool.open(lambda: WebSocketTunnel(front, ex, key), pool.ssl),
                                           ex.service.connect_timeout)
    except (TimeoutError, OSError) as e:
        front.fail(ex, exchange.connect_error(e))
        return front.flush()
    if not front.current(ex):                  # the client reset the stream meanwhile
        tunnel.transport.close()
        return exchange.release_backend(ex)
    ex.headers = [f for f in ex.headers if f[0] != b"sec-websocket-key"]
    proxy_protocol.send(tunnel.transport, pool.proxy_version, front)
    head = request_head(ex, front)
    tunnel.transport.write(head[:-2] + b"Sec-WebSocket-Key: " + key + b"\r\n" + UPGRADE_HEAD)
    front.bind_h2(ex, tunnel)                  # DATA from the client goes to the backend from now on
    body = front.body_to_send(ex)
    if body:
        tunnel.transport.writelines(body)
    front.body_sent(ex)
    if ex.req_done:                            # the client ended its side already
        tunnel.end_body(None)
    front.flush()


class WebSocketTunnel(asyncio.Protocol):
    """The backend connection of one WebSocket stream: the upgrade response, then the relay."""

    def __init__(self, front: Stream, ex: Exchange, key: bytes) -> None:
        self.front = front
        self.ex = ex
        self.accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.headers: Fields = []
        self.switched = False
        self.refused = False                   # the backend answered the upgrade with another status
        self.done = False

    # -- the stream's side (``ex.h2up``): request DATA, its end, a client reset
    def send_body(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def end_body(self, trailers: Fields | None) -> None:
        if self.transport.can_write_eof() and not self.transport.is_closing():
            self.transport.write_eof()

    def cancel(self) -> None:
        self.done = True
        self.transport.close()

    # -- the stream's outbox pushes back on the backend
    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    # -- the backend connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pause_writing(self) -> None:
        self.front.hold_body()

    def resume_writing(self) -> None:
        self.front.release_body()

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        if self.switched:
            return self._relay(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._switch(data[e.args[0]:])
        except (httptools.HttpParserError, BadUpstreamResponse):
            self._broken()
        self.front.flush()

    def eof_received(self) -> bool:
        if self.switched and not self.done:   # the backend closed its side: the stream ends
            self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        ex = self.ex
        if not ex.resp_started:
            self.done = True
            self.front.fail(ex, ConnectError("Bad gateway: backend closed the connection"))
            self.front.flush()
        elif exc is None:
            self._end()
        else:
            self.done = True
            self.front.abort(ex)

    def _relay(self, data: bytes) -> None:
        self.ex.resp_bytes += len(data)
        self.front.send_body(self.ex, data)
        self.front.flush()

    def _end(self) -> None:
        self.done = True
        self.ex.h2up = None
        self.front.finish(self.ex)
        self.transport.close()

    def _broken(self) -> None:
        """An invalid response (or upgrade answer): 502 before the head, a reset after it."""
        self.done = True
        self.transport.close()
        ex = self.ex
        ex.h2up = None
        if ex.resp_started:
            self.front.abort(ex)
        else:
            self.front.fail(ex, BadUpstreamResponse("Bad gateway: invalid response from backend"))

    # -- httptools callbacks (the backend's response head and, for a refused upgrade, its body)
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []
            return
        fields = [(n.lower(), v) for n, v in self.headers if n.lower() not in _NOT_RELAYED]
        self.refused = status != 101
        if status == 101:
            accept = next((v for n, v in self.headers if n.lower() == b"sec-websocket-accept"), None)
            if accept is None or accept.strip() != self.accept:
                raise BadUpstreamResponse("the backend's Sec-WebSocket-Accept does not match")
            status = 200                       # RFC 8441 §5: the extended CONNECT succeeded
        ex = self.ex
        route = ex.route
        if route is not None and route.chain.responders:
            route.chain.on_response(ex, status, fields)
        length = any(n == b"content-length" for n, _ in fields)
        self.front.send_head(ex, status, b"", fields, length)

    def on_body(self, body: bytes) -> None:
        self._relay(body)

    def on_message_complete(self) -> None:
        if self.refused and not self.done:     # a refused upgrade: the response is complete
            self._end()

    def _switch(self, rest: bytes) -> None:
        """The backend said 101: from now on, relay bytes both ways."""
        self.switched = True
        if rest:
            self._relay(rest)
