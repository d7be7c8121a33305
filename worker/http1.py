"""The HTTP/1.1 server side: one ``ClientProtocol`` per client connection, parsed with httptools.

Invariants:
- Requests on a connection are answered strictly in arrival order. ``queue`` holds the exchanges parsed so far;
  only ``queue[0]`` is *active* (may own an upstream connection or write to the client). Pipelined requests
  wait in the queue (reading pauses past ``MAX_PIPELINE``).
- Request bodies stream to the upstream as they are parsed; bytes that arrive before an upstream is bound are
  held in ``ex.pending`` (reading pauses past ``HIGH_WATER``). Response bodies stream back with write-buffer
  back-pressure on both sides.
- Every request gets exactly one response: proxied, answered by a middleware or the gateway (``ex.local``), or
  an error from ``responses``. After a malformed request the connection is closed, never reused.
- Identity headers (X-Real-IP, X-Forwarded-Proto/Host/Port) are always the gateway's own; a client's copies are
  dropped. X-Forwarded-For keeps the client's list and appends the peer address.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools
import orjson

from ..shared import log as gwlog
from . import framing, responses
from .exchange import Exchange, passive_failure, repick
from .headers import PLAIN_CONNECTION_OPTIONS, REQUEST_SPECIAL, connection_tokens, named_by_connection
from .proxy import websocket
from .router import RequestView

# headers the request loop looks at: the proxy's own, plus underscore spellings of framing headers (framing.py)
_SPECIAL = REQUEST_SPECIAL | framing.UNDERSCORE_ALIASES

if TYPE_CHECKING:
    from .process import Worker
    from .runtime import Backend
    from .upstream import UpstreamProtocol

HIGH_WATER = 64 * 1024
MAX_PIPELINE = 16
MAX_URL = 8192
MAX_HEADER_BYTES = 32 * 1024

log = gwlog.get("worker")


class ClientProtocol(asyncio.Protocol):
    # limits (worker/limits.py): the head in progress must complete by ``head_deadline`` (0: no head in
    # progress); ``unparsed`` counts bytes fed since the parser last completed an element (a head, a chunk-size
    # line, a body piece), bounding what llhttp/httptools hold for a line that never ends; ``halted``: a request
    # was refused, nothing after it is parsed
    head_deadline = 0.0
    unparsed = 0
    halted = False
    write_paused = False
    # the protocol of an exchange that is not HTTP/1.1 (access log, whoami); an http2.Stream says HTTP/2.0
    protocol = b"HTTP/1.0"

    def __init__(self, worker: Worker, entrypoint: str, scheme: bytes, port: int) -> None:
        self.worker = worker
        self.limits = limits = worker.limits
        self.max_header_bytes = limits.max_header_bytes     # read per header: kept on the connection
        self.max_header_count = limits.max_header_count
        self.max_pipeline = limits.max_pipeline
        self.entrypoint = entrypoint
        self.scheme = scheme
        self.port = port
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.error_status = 0
        self.queue: deque[Exchange] = deque()
        self.cur: Exchange | None = None
        self.client_ip = ""
        self.peer = b""
        self.fwd_const = b""
        self.closed = False
        self.last_active = worker.now

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        ip = self.client_ip.encode()
        self.peer = ip
        self.fwd_const = b"X-Real-IP: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Port: %d\r\n" % (
            ip, self.scheme, self.port)
        self.xff_trusted = self.worker.runtime.forwarded_for_trusted(self.entrypoint, self.client_ip)
        self.head_deadline = self.worker.now + self.limits.header_timeout
        self.worker.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        for ex in self.queue:
            if ex.sink is not None:
                ex.sink.abort()
            self._account(ex)
            self._release_backend(ex)
            up = ex.upstream
            if up is not None and up.ex is ex:
                up.abandon()
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = self.worker.now
        self.unparsed += len(data)
        try:
            self.parser.feed_data(data)
            if self.unparsed > self.limits.max_unparsed:
                self.error_status = 431 if self.head_deadline else 400
                raise httptools.HttpParserError("line too long")
        except httptools.HttpParserUpgrade as e:
            # Past an upgrade request nothing more is parsed: bytes after its head wait for the tunnel.
            self.transport.pause_reading()
            ex = self.cur
            rest = data[e.args[0]:]
            if rest and ex is not None and ex.upgrade:
                ex.pending = (ex.pending or []) + [rest]
        except httptools.HttpParserError:
            ex = self.cur
            if ex is not None and ex.req_done and not ex.keep_alive and not self.error_status:
                # bytes after a request that ends the connection (Connection: close, HTTP/1.0, a refused one)
                # are never processed (RFC 9112 §9.6); that request's own response still goes out, then close
                self.transport.pause_reading()
                return
            self.fail(self.error_status or 400)

    def pause_writing(self) -> None:
        # a client that does not read its responses gets no more requests parsed (local answers would pile up
        # in the write buffer otherwise); proxied responses also stop reading their upstream
        self.write_paused = True
        self.transport.pause_reading()
        if self.queue:
            up = self.queue[0].upstream
            if up is not None and up.ex is self.queue[0]:
                up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue:
            up = self.queue[0].upstream
            if up is not None and up.ex is self.queue[0]:
                up.resume_reading()
        if not self.closed and self._may_read():
            self.transport.resume_reading()

    def _may_read(self) -> bool:
        """No other reason to keep the client's reading paused (pipeline depth, request body back-pressure)."""
        if self.halted or len(self.queue) > self.max_pipeline:
            return False
        ex = self.cur
        if ex is not None and not ex.req_done:
            if ex.upgrade or ex.pending_bytes > HIGH_WATER:
                return False
            up = ex.upstream
            if up is not None and up.client_paused:
                return False
        return True

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self.halted:
            raise ValueError("request after a refused one")
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.unparsed = 0
        if not self.head_deadline:
            self.head_deadline = self.worker.now + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_uri_bytes:
            self.error_status = 414
            raise ValueError("URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_bytes or len(headers) > self.max_header_count:
            self.error_status = 431
            raise ValueError("header fields too large")

    def on_headers_complete(self) -> None:
        p = self.parser
        self.head_deadline = 0.0
        self.unparsed = 0
        ex = Exchange()
        method = p.get_method()
        ex.method = method
        ex.conn = self
        ex.http11 = p.get_http_version() == "1.1"
        if not ex.http11 and p.get_http_version() != "1.0":
            self.queue.append(ex)
            self.cur = ex
            return self._reject(ex, 505, "HTTP version not supported")
        ex.keep_alive = p.should_keep_alive() and not self.worker.draining
        ex.is_head = method == b"HEAD"
        self.cur = ex
        self.queue.append(ex)

        host = None
        xff = None
        chunked = False
        cl = None
        has_body = False
        tokens = None
        raw = self.headers
        kept = []
        for name, value in raw:          # one pass; ordinary headers cost one set lookup
            ln = name.lower()
            if ln not in _SPECIAL:
                kept.append((name, value))
            elif ln == b"host":
                if host is not None:
                    return self._reject(ex, 400, "Multiple Host headers")
                host = value
            elif ln == b"content-length":     # llhttp refused duplicates and non-digits; forward it canonical
                cl = framing.content_length(value)
                if cl is None:
                    return self._reject(ex, 400, "Invalid Content-Length")
                has_body = cl != b"0"
                kept.append((b"Content-Length", cl))
            elif ln == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif ln == b"transfer-encoding":
                if chunked or not framing.is_chunked(value):
                    return self._reject(ex, 400, "Unsupported Transfer-Encoding")
                chunked = True
            elif ln == b"connection" and value.lower() not in PLAIN_CONNECTION_OPTIONS:
                tokens = connection_tokens(value, tokens)
            elif ln in framing.UNDERSCORE_ALIASES:
                return self._reject(ex, 400, "Invalid header name")
        drop = named_by_connection(tokens) if tokens is not None else None
        if drop is not None:             # rare: Connection names more headers to strip
            drop.discard(b"content-length")     # never: the body would be read as the next request
            kept = [(n, v) for n, v in kept if n.lower() not in drop]
        if chunked:
            if not ex.http11 or cl is not None:     # TE on HTTP/1.0, or TE with CL: the framing is ambiguous
                return self._reject(ex, 400, "Invalid Transfer-Encoding")
            has_body = True
        ex.req_chunked = chunked
        ex.req_has_body = has_body
        ex.headers = kept
        if has_body and self.limits.max_body_bytes:
            if cl is not None and int(cl) > self.limits.max_body_bytes:    # int() of checked digits only
                return self._reject(ex, 413, "Request body too large")
            ex.req_limit = self.limits.max_body_bytes      # streamed: counted in on_body (middlewares may lower it)
        if xff is not None:
            ex.xff_in = xff
        ex.xff = xff + b", " + self.peer if xff is not None and self.xff_trusted else self.peer

        if host is None:
            if ex.http11:
                return self._reject(ex, 400, "Missing Host header")
            host = b""
        elif host not in framing.VALID_HOSTS and not framing.valid_host(host):
            return self._reject(ex, 400, "Invalid Host header")
        ex.host = host
        url = self.url
        if url[:1] != b"/":
            if url[:7].lower() in (b"http://", b"https:/"):
                parts = urlsplit(url)
                url = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
            elif not (url == b"*" and method == b"OPTIONS"):
                return self._reject(ex, 400, "Invalid request target")
        ex.target = url
        if self.worker.obs.tracer is not None:
            self.worker.obs.tracer.start(ex)
        if p.should_upgrade():
            ex.keep_alive = False
            if not websocket.is_websocket(raw):
                ex.local = responses.error(501, "Only WebSocket upgrades are supported", close=True)
                return self._started(ex)
            ex.upgrade = True

        runtime = self.worker.runtime
        ex.runtime = runtime
        table = runtime.tables.get(self.entrypoint)
        path, _, query = url.partition(b"?")
        hostname = host
        if hostname[:1] == b"[":
            hostname = hostname[: hostname.find(b"]") + 1]
        else:
            hostname = hostname.partition(b":")[0]
        view = RequestView(hostname.decode("latin-1").lower(), path.decode("latin-1"), method.decode(),
                           raw, query, self.client_ip)
        route = table.match(view) if table is not None else None
        if route is None:
            ex.local = self._error(ex, 404)
            return self._started(ex)
        ex.route = route
        ex.service = route.service
        if route.chain.middlewares:
            reply = route.chain.on_request(ex)
            if reply is not None:
                if reply.__class__ is bytes:
                    ex.local = reply  # type: ignore[assignment]
                else:
                    ex.suspended = True
                    self.worker.loop.create_task(self._resume_chain(ex, reply))  # type: ignore[arg-type]
        return self._started(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        ex.req_bytes += len(body)
        self.unparsed -= len(body)
        if ex.sink is not None:
            return ex.sink.feed(body)
        if ex.local is not None:
            return  # answered without a backend: the body is read and dropped
        if ex.req_limit and self._over_limit(ex, len(body)):
            return
        if ex.req_chunked:
            body = b"%x\r\n%s\r\n" % (len(body), body)
        if ex.replay is not None:
            ex.retry.keep(ex, body)  # type: ignore[union-attr]
        up = ex.upstream
        if up is not None:
            if up.ex is ex:
                up.transport.write(body)
            return  # else: the response already finished (early response); drop the rest
        if ex.pending is None:
            ex.pending = [body]
        else:
            ex.pending.append(body)
        ex.pending_bytes += len(body)
        if ex.pending_bytes > HIGH_WATER:
            self.transport.pause_reading()

    def on_chunk_header(self) -> None:
        self.unparsed = 0

    on_chunk_complete = on_chunk_header

    def on_message_complete(self) -> None:
        ex = self.cur
        ex.req_done = True
        self.unparsed = 0
        if ex.sink is not None:
            return ex.sink.complete()
        if ex.req_chunked and ex.local is None:
            if ex.replay is not None:
                ex.retry.keep(ex, b"0\r\n\r\n")  # type: ignore[union-attr]
            up = ex.upstream
            if up is not None:
                if up.ex is ex:
                    up.transport.write(b"0\r\n\r\n")
            elif ex.pending is None:
                ex.pending = [b"0\r\n\r\n"]
            else:
                ex.pending.append(b"0\r\n\r\n")

    # -- exchange management
    def _started(self, ex: Exchange) -> None:
        if len(self.queue) == 1:
            self.start_exchange(ex)
        elif len(self.queue) > self.max_pipeline or self.write_paused:
            self.transport.pause_reading()

    def _reject(self, ex: Exchange, status: int, message: str) -> None:
        self.halted = True                 # what follows a refused request is never parsed or forwarded
        ex.keep_alive = False
        ex.local = responses.error(status, message, close=True)
        self._started(ex)

    def _error(self, ex: Exchange, status: int, message: str | None = None) -> bytes:
        route = ex.route
        if route is not None and route.chain.responders:     # routed: the chain's response phase (CORS on a 502)
            return route.chain.error(ex, status, message)
        return responses.error(status, message, close=not ex.keep_alive, head=ex.is_head,
                               keep_alive_header=not ex.http11 and ex.keep_alive)

    def start_exchange(self, ex: Exchange) -> None:
        if ex.suspended:
            return  # _resume_chain starts it
        if ex.local is not None:
            return self._answer(ex, ex.local)
        service = ex.service
        if service.internal is not None:
            return self._answer(ex, self._acme_http01(ex) if service.internal == "acme" else self._whoami(ex))
        if service.sticky is None:
            backend = service.balancer.pick()
        else:
            backend, ex.set_cookie = service.sticky.pick(ex.headers, self.worker.now)
        if backend is None:
            return self._answer(ex, self._error(ex, 503))
        ex.backend = backend
        backend.acquire()
        self.connect_upstream(ex)

    def _head(self, ex: Exchange) -> bytes:
        """The request head sent upstream (built late: the backend decides Host when pass_host_header=false)."""
        host = ex.host if ex.service.pass_host_header else ex.backend.host_header
        parts = [ex.method, b" ", ex.target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
        parts += [b"%s: %s\r\n" % h for h in ex.headers]
        if ex.req_chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"X-Forwarded-For: %s\r\nX-Forwarded-Host: %s\r\n" % (ex.xff, ex.host))
        parts.append(self.fwd_const)
        parts.append(b"\r\n")
        return b"".join(parts)

    def connect_upstream(self, ex: Exchange) -> None:
        if ex.upgrade:
            return websocket.connect(self, ex)
        up = ex.backend.pool.get_idle()
        if up is not None:
            self._bind(ex, up)
        else:
            self.worker.loop.create_task(self._connect_and_bind(ex))

    async def _connect_and_bind(self, ex: Exchange) -> None:
        pool = ex.backend.pool     # the client may leave meanwhile, and connection_lost clears ex.backend
        try:
            up = await pool.connect(ex.service.connect_timeout)
        except TimeoutError:
            return self.upstream_failed(ex, 504, "Gateway timeout: connecting to the backend timed out")
        except OSError as e:
            return self.upstream_failed(ex, 502, f"Bad gateway: cannot connect to backend: {e.strerror or e}")
        if self.closed or not self.queue or self.queue[0] is not ex:
            pool.release(up)
            return
        self._bind(ex, up)

    def _bind(self, ex: Exchange, up: UpstreamProtocol) -> None:
        ex.upstream = up
        ex.t_up = perf_counter()
        up.bind(self, ex, self._head(ex), ex.service.response_timeout)
        if ex.attempts and ex.replay:
            up.transport.write(bytes(ex.replay))  # a retry: the whole body so far (pending is its tail)
            ex.pending = None
            ex.pending_bytes = 0
        elif ex.pending is not None:
            up.transport.writelines(ex.pending)
            ex.pending = None
            if ex.pending_bytes > HIGH_WATER:
                self.transport.resume_reading()
            ex.pending_bytes = 0

    def _account(self, ex: Exchange) -> None:
        """Count a finished exchange on the plane, exactly once (status 0: the client left before a response)."""
        if ex.counted:
            return
        ex.counted = True
        if ex.on_done is not None:
            for done in ex.on_done:
                try:
                    done(ex)
                except Exception:  # noqa: BLE001 — a middleware bug must not break accounting
                    log.exception("on_done hook failed")
        self.worker.obs.finish(ex, self)       # the plane's counters and observations, access log, spans

    def _release_backend(self, ex: Exchange) -> None:
        backend = ex.backend
        if backend is not None:
            ex.backend = None
            backend.release()

    def _answer(self, ex: Exchange, data: bytes) -> None:
        ex.resp_started = True
        ex.status = int(data[9:12])
        ex.local = data
        self._account(ex)              # before the client sees it (see UpstreamProtocol.on_message_complete)
        self._release_backend(ex)
        self.transport.write(data)
        self.response_finished(ex, chunked_end=False)

    def upstream_failed(self, ex: Exchange, status: int, message: str) -> None:
        """The backend could not produce a response head: answer with a JSON error."""
        passive_failure(ex, self.worker.now)
        if self.closed:
            self._release_backend(ex)
            return
        reached = ex.upstream is not None     # the request (or part of it) went out before the failure
        ex.upstream = None
        if ex.retry is not None and ex.retry.again(ex, reached):
            return self.retry_later(ex)
        if not ex.req_done:
            ex.keep_alive = False      # the rest of the request body would be misread as a new request
        self._answer(ex, self._error(ex, status, message))

    def retry_later(self, ex: Exchange) -> None:
        """Send the exchange again after the retry middleware's delay, to another backend when there is one."""
        failed = ex.backend
        self._release_backend(ex)
        self.worker.loop.call_later(ex.retry.delay(ex), self._redispatch, ex, failed)  # type: ignore[union-attr]

    def _redispatch(self, ex: Exchange, failed: Backend | None) -> None:
        if self.closed or not self.queue or self.queue[0] is not ex:
            return
        backend = repick(ex.service, failed)
        if backend is None:
            return self._answer(ex, self._error(ex, 503))
        ex.backend = backend
        backend.acquire()
        self.connect_upstream(ex)

    async def _resume_chain(self, ex: Exchange, pending: Awaitable[bytes | None]) -> None:
        """The end of an async request phase: answer with its reply, or proxy, once the exchange is first."""
        try:
            reply = await pending
        except Exception:  # noqa: BLE001 — a middleware bug answers 500, never kills the connection
            log.exception("middleware failed on %s %s", ex.method, ex.target)
            reply = responses.error(500, close=not ex.keep_alive, head=ex.is_head,   # the chain did not finish:
                                    keep_alive_header=not ex.http11 and ex.keep_alive)  # no response phase
        ex.suspended = False
        if reply is not None:
            ex.local = reply
            if ex.pending_bytes > HIGH_WATER and not self.closed:
                self.transport.resume_reading()
            ex.pending = None
            ex.pending_bytes = 0
        if not self.closed and self.queue and self.queue[0] is ex:
            self.start_exchange(ex)

    def _over_limit(self, ex: Exchange, size: int) -> bool:
        """Check the streamed request body (``ex.req_bytes``, counted in on_body) against ``ex.req_limit``;
        past it, answer 413 and stop forwarding."""
        if ex.req_bytes <= ex.req_limit:
            return False
        ex.local = reply = responses.too_large(ex.req_limit, close=True)
        ex.req_limit = 0
        ex.keep_alive = False
        ex.pending = None
        up = ex.upstream
        if up is not None and up.ex is ex:
            up.abandon()                # abort the upstream request: it never gets the rest of the body
        ex.upstream = None
        if ex.resp_started:
            self.abort(ex)
        elif self.queue and self.queue[0] is ex and not ex.suspended:
            self._release_backend(ex)
            self._answer(ex, reply)
        return True

    def response_finished(self, ex: Exchange, chunked_end: bool) -> None:
        if not ex.counted:         # usually done already, before the response's last bytes went out
            self._account(ex)
        if ex.backend is not None:
            self._release_backend(ex)
        if self.closed:
            return
        t = self.transport
        if chunked_end:
            t.write(b"0\r\n\r\n")
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        if not ex.keep_alive or (self.worker.draining and not self.queue):
            self.closed = True
            t.close()
            return
        if self.queue:
            if len(self.queue) == self.max_pipeline and not self.write_paused:
                t.resume_reading()
            self.start_exchange(self.queue[0])

    def head_timed_out(self) -> None:
        """The worker's sweep: the request head did not complete within the header timeout (slowloris)."""
        if self.closed:
            return
        self.closed = True
        if self.url or self.headers:           # a request was started: tell the client why
            self.transport.write(responses.error(408, close=True))
        self.transport.close()

    def body_timed_out(self, ex: Exchange) -> None:
        """The worker's sweep: no request body bytes for the body timeout while the gateway was reading."""
        if self.closed:
            return
        if ex.resp_started or self.queue[0] is not ex:
            return self.abort(ex)
        up = ex.upstream
        if up is not None and up.ex is ex:
            up.abandon()                # the upstream request is incomplete: never reuse that connection
        ex.upstream = None
        self.fail(408)

    def fail(self, status: int) -> None:
        """A malformed request: answer it (unless a response is already on the wire) and close."""
        if self.closed:
            return
        self.closed = True
        if not (self.queue and self.queue[0].resp_started):
            self.transport.write(responses.error(status, close=True))
        self.transport.close()

    def abort(self, ex: Exchange) -> None:
        """The backend died mid-response: the client can only learn it from a reset connection."""
        self._account(ex)
        self._release_backend(ex)
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def close_if_idle(self) -> bool:
        if not self.queue and not self.closed:
            self.closed = True
            self.transport.close()
            return True
        return False

    def _acme_http01(self, ex: Exchange) -> bytes:
        """ACME HTTP-01: the key authorization of a pending challenge (tokens come from the master)."""
        token = ex.target.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode("latin-1")
        answer = self.worker.acme_tokens.get(token)
        if answer is None:
            return self._error(ex, 404)
        data = answer.encode()
        reply = responses.build(200, data, b"text/plain", close=not ex.keep_alive,
                                keep_alive_header=not ex.http11 and ex.keep_alive)
        return reply[: len(reply) - len(data)] if ex.is_head else reply

    def _whoami(self, ex: Exchange) -> bytes:
        headers: dict[str, list[str]] = {}
        for name, value in self.headers:
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        peer = self.transport.get_extra_info("peername") or ("", 0)
        body: dict[str, Any] = {
            "hostname": os.uname().nodename,
            "method": ex.method.decode(),
            "path": ex.target.decode("latin-1"),
            "proto": "HTTP/1.1" if ex.http11 else self.protocol.decode(),   # self: an http2.Stream too
            "host": ex.host.decode("latin-1"),
            "headers": headers,
            "client": {"ip": peer[0], "port": peer[1]},
            "entrypoint": self.entrypoint,
            "router": ex.route.name if ex.route else None,
            "worker": {"slot": self.worker.slot, "pid": os.getpid()},
            "generation": ex.runtime.generation,
        }
        data = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
        reply = responses.build(200, data, b"application/json", close=not ex.keep_alive,
                                keep_alive_header=not ex.http11 and ex.keep_alive)
        return reply[: len(reply) - len(data)] if ex.is_head else reply
