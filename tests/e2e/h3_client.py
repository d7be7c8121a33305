"""An HTTP/3 client for tests, on aioquic's own QUIC and HTTP/3 implementation: ``H3Transport`` lets a plain
``httpx.Client`` speak HTTP/3 (so the both-protocol suite runs unchanged over it), ``H3Connection`` is the async
connection under it, which also reports a response's DATA as it arrives.

One QUIC connection per transport, driven by an event loop on a thread of its own; responses come back whole
(``http_version`` ``HTTP/3``), trailers in the ``trailers`` extension. A request body given as an iterator goes
out one DATA frame per piece.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.connection import H3Connection as H3State
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

Fields = list[tuple[bytes, bytes]]
_NOT_SENT = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection"}


@dataclass
class H3Response:
    status: int = 0
    headers: Fields = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)    # the body, one item per DATA frame received
    trailers: Fields = field(default_factory=list)
    reset: int | None = None                               # the stream was reset with this code

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class H3Connection(QuicConnectionProtocol):
    """The client side of one QUIC connection: ``request`` sends one and waits for its whole response."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.h3 = H3State(self._quic)
        self.pending: dict[int, tuple[H3Response, asyncio.Future[H3Response]]] = {}

    async def request(self, method: str, authority: str, path: str, headers: Fields = (),  # type: ignore[assignment]
                      body: Iterable[bytes] | bytes = b"", trailers: Fields | None = None) -> H3Response:
        """One request; ``trailers`` end it with a HEADERS block after the body."""
        stream_id = self._quic.get_next_available_stream_id()
        pieces = [body] if isinstance(body, bytes) else list(body)
        pieces = [p for p in pieces if p]
        fields = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", authority.encode()),
                  (b":path", path.encode()), *headers]
        future: asyncio.Future[H3Response] = asyncio.get_running_loop().create_future()
        self.pending[stream_id] = (H3Response(), future)
        self.h3.send_headers(stream_id, fields, end_stream=not pieces and not trailers)
        for i, piece in enumerate(pieces):
            self.h3.send_data(stream_id, piece, end_stream=i == len(pieces) - 1 and not trailers)
            self.transmit()
        if trailers:
            self.h3.send_headers(stream_id, trailers, end_stream=True)
        self.transmit()
        return await future

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            for _r, future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"QUIC connection closed: {event.reason_phrase}"))
            self.pending.clear()
            return
        if isinstance(event, StreamReset) and event.stream_id in self.pending:
            response, future = self.pending.pop(event.stream_id)
            response.reset = event.error_code
            future.set_result(response)
            return
        for h3_event in self.h3.handle_event(event):
            entry = self.pending.get(h3_event.stream_id)  # type: ignore[attr-defined]
            if entry is None:
                continue
            response, future = entry
            if isinstance(h3_event, HeadersReceived):
                status = dict(h3_event.headers).get(b":status")
                if response.status:
                    response.trailers = h3_event.headers
                elif status is not None and not status.startswith(b"1"):   # 1xx: interim, not the response
                    response.status = int(status)
                    response.headers = [f for f in h3_event.headers if not f[0].startswith(b":")]
            elif isinstance(h3_event, DataReceived) and h3_event.data:
                response.chunks.append(h3_event.data)
            if h3_event.stream_ended:  # type: ignore[attr-defined]
                self.pending.pop(h3_event.stream_id, None)  # type: ignore[attr-defined]
                future.set_result(response)


def configuration(cafile: str, server_name: str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    config.load_verify_locations(cafile)
    config.verify_mode = ssl.CERT_REQUIRED
    return config


class H3Transport(httpx.BaseTransport):
    """httpx over one HTTP/3 connection to 127.0.0.1:``port`` (certificate checked for ``server_name``)."""

    def __init__(self, port: int, cafile: str, server_name: str, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._cm = connect("127.0.0.1", port, configuration=configuration(cafile, server_name),
                           create_protocol=H3Connection, wait_connected=True)
        try:
            self.conn: H3Connection = self._run(self._cm.__aenter__())
        except BaseException:
            self._stop_loop()
            raise

    def request_with_trailers(self, method: str, authority: str, path: str, chunks: list[bytes],
                              trailers: Fields) -> H3Response:
        """What httpx cannot send: a streamed body that ends with trailer fields."""
        return self._run(self.conn.request(method, authority, path, [], chunks, trailers))

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = [(k.lower(), v) for k, v in request.headers.raw]
        authority = next((v for k, v in headers if k == b"host"), b"").decode()
        headers = [(k, v) for k, v in headers if k not in _NOT_SENT]
        body = request.content if isinstance(request.stream, httpx.ByteStream) else list(request.stream)
        target = request.url.raw_path.decode()
        got = self._run(self.conn.request(request.method, authority, target, headers, body))
        if got.reset is not None:
            raise httpx.RemoteProtocolError(f"stream reset by the gateway (code {got.reset:#x})", request=request)
        return httpx.Response(got.status, headers=got.headers, stream=httpx.ByteStream(got.body),
                              extensions={"http_version": b"HTTP/3", "trailers": got.trailers})

    def close(self) -> None:
        try:
            self._run(self._cm.__aexit__(None, None, None))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(self.timeout)
        if not self.thread.is_alive():
            self.loop.close()
