"""Protocol backends for end-to-end tests, each on its own event loop in a background thread of the test
process (the gateway is a separate process, so the traffic is real): a ``websockets`` echo server, a WebSocket
backend that accepts and then never reads, an SSE / NDJSON server, TLS echo servers that name themselves, a UDP
echo server, Hypercorn (HTTP/2, on a port or a unix socket), and an HTTP/WebSocket app and a byte echo on unix
sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web
from harness import free_port, port_open, wait_until


class LoopThread:
    """An asyncio loop in a daemon thread; ``start(coro_factory)`` runs a server setup on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.state: dict[str, Any] = {}

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class WebSocketEcho(LoopThread):
    """``websockets`` server: echoes every message; ``/close/<code>`` closes with that code; ``/reject`` answers
    403; ``/headers`` sends the request headers as JSON first."""

    def __init__(self) -> None:
        super().__init__()
        import websockets
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.open = 0

        def process_request(conn: Any, request: Any) -> Any:
            if request.path == "/reject":
                return Response(403, "Forbidden", Headers([("Content-Length", "6")]), b"denied")
            return None

        async def handler(ws: Any) -> None:
            self.open += 1
            try:
                path = ws.request.path
                if path.startswith("/close/"):
                    await ws.close(int(path.rsplit("/", 1)[1]), "bye")
                    return
                if path == "/headers":
                    await ws.send(json.dumps({k.lower(): v for k, v in ws.request.headers.raw_items()}))
                async for message in ws:
                    await ws.send(message)
            finally:
                self.open -= 1

        async def start() -> None:
            self.server = await websockets.serve(handler, "127.0.0.1", self.port, max_size=None,
                                                 process_request=process_request)

        self.run(start())


class StalledWebSocket(LoopThread):
    """Completes each WebSocket handshake, then never reads again (a small receive buffer, so the kernel holds
    little): the backend of a channel that must not stall the others; a ``/silent`` path never gets its
    handshake answered. ``open`` counts its connections."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.open = 0
        self.transports: list[Any] = []   # a transport that does not read is referenced by nothing else: kept
        stalled = self

        class Handshake(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                self.head = b""
                stalled.open += 1
                stalled.transports.append(transport)

            def data_received(self, data: bytes) -> None:
                self.head += data
                if b"\r\n\r\n" not in self.head:
                    return
                if b"/silent" in self.head.split(b"\r\n", 1)[0]:    # never answers the upgrade at all
                    self.transport.pause_reading()
                    return
                key = next(line.split(b":", 1)[1].strip() for line in self.head.split(b"\r\n")
                           if line.lower().startswith(b"sec-websocket-key:"))
                accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                self.transport.pause_reading()

            def connection_lost(self, exc: Exception | None) -> None:
                stalled.open -= 1

        async def start() -> None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind(("127.0.0.1", self.port))
            self.server = await asyncio.get_running_loop().create_server(Handshake, sock=sock)

        self.run(start())


class StreamServer(LoopThread):
    """aiohttp server: ``/sse/<n>/<interval>`` sends n events ``interval`` s apart, each stamped with the
    server's clock; ``/ndjson/<n>/<interval>`` the same as NDJSON; ``/forever`` streams until the client goes
    (``state["cancelled"]`` counts requests whose client went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state["cancelled"] = 0
        self.state["active"] = 0

        async def events(request: web.Request) -> web.StreamResponse:
            kind = request.match_info["kind"]
            n, interval = int(request.match_info["n"]), float(request.match_info["interval"])
            ctype = "text/event-stream" if kind == "sse" else "application/x-ndjson"
            resp = web.StreamResponse(headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
            await resp.prepare(request)
            for i in range(n):
                stamp = json.dumps({"i": i, "t": time.time()})
                await resp.write((f"data: {stamp}\n\n" if kind == "sse" else stamp + "\n").encode())
                await asyncio.sleep(interval)
            await resp.write_eof()
            return resp

        async def forever(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            self.state["active"] += 1
            try:
                while True:
                    await resp.write(b"data: tick\n\n")
                    await asyncio.sleep(0.05)
            except (asyncio.CancelledError, ConnectionResetError):
                self.state["cancelled"] += 1
                raise
            finally:
                self.state["active"] -= 1

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/{kind:sse|ndjson}/{n}/{interval}", events)
            app.router.add_get("/forever", forever)
            self.runner = web.AppRunner(app, handler_cancellation=True)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        self.run(start())


class TLSEcho(LoopThread):
    """A TLS server that answers every line with ``<name>:<line>`` (for SNI passthrough tests)."""

    def __init__(self, name: str, cert: str, key: str) -> None:
        super().__init__()
        self.port = free_port()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(f"{name}:".encode() + line)
                await writer.drain()
            writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", self.port, ssl=ctx)

        self.run(start())


class UDPEcho(LoopThread):
    """Answers each datagram with ``<name>:<datagram>``; ``state["peers"]`` records the source addresses."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.port = free_port()
        self.state["peers"] = set()
        owner = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                owner.state["peers"].add(addr)
                self.transport.sendto(name.encode() + b":" + data, addr)

        async def start() -> None:
            self.transport, _ = await self.loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", self.port))

        self.run(start())


class HTTPSApp(LoopThread):
    """An aiohttp server over TLS (certificate ``cert``/``key``) answering every path with ``{"tls": true}``."""

    def __init__(self, cert: str, key: str) -> None:
        super().__init__()
        self.port = free_port()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

        async def handle(request: web.Request) -> web.Response:
            return web.json_response({"tls": request.secure, "path": request.path})

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx).start()

        self.run(start())


class HypercornH2(LoopThread):
    """Hypercorn (a real HTTP/2 server) serving an ASGI app over h2c with prior knowledge, or over TLS (ALPN h2)
    when given a certificate. ``/info`` answers JSON with a content-length: the HTTP version, method, path, body
    length and request headers it got; ``/stream/<n>`` sends ``n`` pieces without a length, then a trailer
    ``x-checksum: <n>``."""

    def __init__(self, cert: str | None = None, key: str | None = None, unix: str | None = None) -> None:
        """``unix``: listen on that socket path instead (the server URL is then ``unix+h2c://``)."""
        super().__init__()
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self.port = free_port()
        config = Config()
        config.bind = [f"unix:{unix}" if unix else f"127.0.0.1:{self.port}"]
        config.loglevel = "WARNING"
        if cert is not None:
            config.certfile, config.keyfile = cert, key
            config.alpn_protocols = ["h2"]
        self.url = f"unix+h2c://{unix}" if unix else f"{'https' if cert else 'h2c'}://127.0.0.1:{self.port}"

        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            path = scope["path"]
            if path.startswith("/stream/"):
                n = int(path.rsplit("/", 1)[1])
                await send({"type": "http.response.start", "status": 200, "trailers": True,
                            "headers": [(b"content-type", b"text/plain")]})
                for i in range(n):
                    await send({"type": "http.response.body", "body": b"piece %d\n" % i, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"%d" % n)]})
                return
            info = json.dumps({"http_version": scope["http_version"], "method": scope["method"], "path": path,
                               "body_len": len(body), "body_head": body[:20].decode("latin-1"),
                               "headers": {k.decode(): v.decode() for k, v in scope["headers"]}}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(info))]})
            await send({"type": "http.response.body", "body": info})

        self.stopping = asyncio.Event()

        async def start() -> None:
            self.stopping = asyncio.Event()
            self.task = asyncio.ensure_future(serve(app, config, shutdown_trigger=self.stopping.wait))

        self.run(start())
        wait_until(lambda: unix_open(unix) if unix else port_open(self.port), what="hypercorn listening")

    def stop(self) -> None:
        async def shutdown() -> None:
            self.stopping.set()
            await self.task

        self.run(shutdown())
        super().stop()



def unix_open(path: str) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(0.2)
        return s.connect_ex(path) == 0


class UnixApp(LoopThread):
    """aiohttp on a unix socket: every path answers JSON (its name, path and the Host it got) and counts the
    connections that carried it; ``/ws`` is a WebSocket echo. ``stop`` removes the socket file."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__()
        self.path = path
        self.url = f"unix://{path}"
        self.connections: set[int] = set()

        async def handle(request: web.Request) -> web.StreamResponse:
            self.connections.add(id(request.transport))
            if request.path == "/ws":
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                async for msg in ws:
                    await ws.send_str(f"{name}: {msg.data}")
                return ws
            return web.json_response({"name": name, "path": request.path, "host": request.headers.get("Host")})

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.UnixSite(self.runner, path).start()

        self.run(start())

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        super().stop()
        if os.path.exists(self.path):
            os.unlink(self.path)


class UnixEcho(LoopThread):
    """A byte echo on a unix socket that prefixes its name, for TCP services."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__()
        self.url = f"unix://{path}"

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(name.encode() + b":" + data)
                await writer.drain()
            writer.close()

        async def start() -> None:
            self.server = await asyncio.start_unix_server(handle, path)

        self.run(start())

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        self.run(close())
        super().stop()
