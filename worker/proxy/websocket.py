"""WebSocket (HTTP/1.1 ``Upgrade: websocket``) proxying.

The upgrade request is an ordinary exchange up to the backend: ``http1.ClientProtocol`` routes it and runs the
request phase of the router's middleware chain (auth, ip-allow, rate-limit answer it like any request), the
balancer picks a backend, and only then ``connect()`` takes over. The backend gets its own fresh connection
(never a pooled one: it will not come back) and the request head with ``Connection: Upgrade`` and
``Upgrade: websocket`` restored. Then:

- on ``101 Switching Protocols`` the response head (plus the response phase of the chain) goes to the client
  and both connections become a ``Tunnel``: bytes are relayed both ways until either side closes or the
  tunnel idles out. From here on neither side is parsed; WebSocket frames pass untouched.
- on any other status the backend refused the upgrade: its response is relayed as a normal response and the
  client connection is closed after it.

A tunnel belongs to the worker, not to a config generation, so a reload (SIGHUP) never closes open
WebSockets. The backend stays *acquired* (counted in-flight) for the tunnel's life, so least-connections sees
long-lived sockets.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from ...shared.errors import BadUpstreamResponse, ConnectError
from .. import exchange, proxy_protocol
from ..hop_headers import HOP_BY_HOP, connection_tokens
from ..responses import status_line
from ..upstream.http1 import request_head
from .tunnel import Tunnel

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..http1 import ClientProtocol

UPGRADE_HEAD = b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def is_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when the request asks to upgrade to WebSocket (``Upgrade: websocket`` and Connection: upgrade)."""
    upgrade = connection = False
    for name, value in headers:
        ln = name.lower()
        if ln == b"upgrade":
            upgrade = upgrade or b"websocket" in value.lower()
        elif ln == b"connection":
            connection = connection or b"upgrade" in connection_tokens(value)
    return upgrade and connection


def connect(client: ClientProtocol, ex: Exchange) -> None:
    client.worker.loop.create_task(_connect(client, ex))


async def _connect(client: ClientProtocol, ex: Exchange) -> None:
    pool = ex.backend.pool
    try:
        _, up = await asyncio.wait_for(pool.open(lambda: UpgradeUpstream(client, ex), pool.ssl),
                                       ex.service.connect_timeout)
    except (TimeoutError, OSError) as e:
        return client.fail(ex, exchange.connect_error(e))
    if client.closed:
        up.transport.close()
        exchange.release_backend(ex)
        return
    proxy_protocol.send(up.transport, pool.proxy_version, client)
    head = request_head(ex, client)
    up.transport.write(head[:-2] + UPGRADE_HEAD)
    if ex.pending:
        up.transport.writelines(ex.pending)
        ex.pending = None


class UpgradeUpstream(asyncio.Protocol):
    """The backend side until its response head arrived; a tunnel pipe after a 101."""

    def __init__(self, client: ClientProtocol, ex: Exchange) -> None:
        self.client = client
        self.ex = ex
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.switched = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._switch(data[e.args[0]:])
        except httptools.HttpParserError:
            self.transport.close()
            if not self.ex.resp_started:
                self.client.fail(self.ex, BadUpstreamResponse("Bad gateway: invalid response from backend"))
            else:
                self.client.abort(self.ex)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.switched:
            return
        if not self.ex.resp_started:
            self.client.fail(self.ex, ConnectError("Bad gateway: backend closed the connection"))
        else:
            self.client.finish(self.ex)

    # -- httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.reason, self.headers = b"", []
            return
        ex = self.ex
        fields = [f for f in self.headers
                  if f[0].lower() not in HOP_BY_HOP or (status == 101 and f[0].lower() in (b"connection", b"upgrade"))]
        ex.resp_started = True
        ex.status = status
        if ex.route is not None and ex.route.chain.responders:
            ex.route.chain.on_response(ex, status, fields)
        parts = [status_line(status, self.reason), *[b"%s: %s\r\n" % f for f in fields]]
        if status != 101:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        self.client.transport.write(b"".join(parts))

    def on_body(self, body: bytes) -> None:
        self.ex.resp_bytes += len(body)
        self.client.transport.write(body)

    def on_message_complete(self) -> None:
        if self.ex.status != 101:             # a refused upgrade: the response is complete, close both
            self.transport.close()

    def _switch(self, rest: bytes) -> None:
        """The backend said 101: from now on, relay bytes."""
        client, ex = self.client, self.ex
        self.switched = True
        client.worker.connections.discard(client)
        client.closed = True                   # the ClientProtocol is done; the tunnel owns the connection

        def finished(tunnel: Tunnel) -> None:
            ex.resp_bytes += tunnel.bytes
            client.finish(ex)

        tunnel = Tunnel(client.worker, client.entrypoint, finished)
        tunnel.join(client.transport, self.transport)
        if rest:
            client.transport.write(rest)
