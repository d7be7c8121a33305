"""Distributed tracing: W3C Trace Context and B3 propagation, one server span and one client span per
request, and an OTLP/HTTP (JSON) exporter that batches finished spans off the hot path.

Per request (``Tracer.start``, called once the request head is parsed, before the middleware chain; an HTTP/2
stream is a request like an HTTP/1.1 one, and a gRPC call's server span adds ``rpc.grpc.status_code``):
- the incoming context is read from ``traceparent`` (+ ``tracestate``), else the single ``b3`` header, else
  ``X-B3-TraceId``/``X-B3-SpanId``/``X-B3-Sampled``; an invalid header counts as absent (W3C: restart the
  trace). Without a valid context a new trace starts, sampled with probability ``sample_rate``;
- two span ids are drawn: the gateway's server span (its parent is the incoming span) and its client span
  for the upstream call (its parent is the server span). The backend receives the *client* span id as its
  parent, in every configured propagation format; the client's own tracing headers are replaced (a
  ``tracestate`` is passed on unchanged);
- the sampled flag is honoured as received; unsampled requests still propagate, and export nothing.

Ids are hex digits sliced off a pool of ``os.urandom`` bytes (one system call per 64 to 128 requests; formatting
a random integer as hex costs more than the rest of ``start``), so ids are never derived from time or pids.

Export (``OtlpExporter``): finished spans wait in a bounded queue; a task posts batches of ``batch_size``
(or whatever is queued every ``flush_interval``) to the collector with aiohttp, one request at a time. When
the queue is full, or a post fails or times out, spans are dropped and counted on the plane
(``a3s_gateway_tracing_spans_dropped_total``): a slow or dead collector never blocks or fails a request.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any

import orjson

from ...shared import log as gwlog

if TYPE_CHECKING:
    from ..exchange import Exchange

log = gwlog.get("tracing")

_getrandbits = random.getrandbits
_TRACE_HEADERS = frozenset((b"traceparent", b"tracestate", b"b3", b"x-b3-traceid", b"x-b3-spanid",
                            b"x-b3-parentspanid", b"x-b3-sampled", b"x-b3-flags"))
_ZERO = "0" * 16
_ZERO32 = "0" * 32
POOL_BYTES = 4096               # random bytes drawn from the OS at a time for ids (as hex: 128 requests' worth)
_urandom = os.urandom
_time_ns = time.time_ns
_HEX = frozenset(b"0123456789abcdef")

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
STATUS_UNSET, STATUS_ERROR = 0, 2


class Span:
    """The trace state of one exchange (``ex.span``): made by ``Tracer.start``, read-only after. A native class
    (tracing.pxd): ``start`` fills its fields as struct writes, the access log and ``finish`` read them so."""

    __slots__ = ("client_id", "parent_id", "sampled", "span_id", "trace_id", "tracestate")

    trace_id: str
    span_id: str                # the gateway's server span
    parent_id: str              # the caller's span ("" when the request carried no context)
    client_id: str              # the gateway's client span (the backend's parent)
    sampled: bool
    tracestate: bytes | None


def _is_hex(value: bytes, n: int) -> bool:
    return len(value) == n and _HEX.issuperset(value) and value.strip(b"0") != b""


def parse_traceparent(value: bytes) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) from a ``traceparent`` value, or None when it is invalid."""
    parts = value.strip().lower().split(b"-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == b"ff" or not _HEX.issuperset(parts[0]):
        return None
    if parts[0] == b"00" and len(parts) != 4:
        return None
    tid, sid, flags = parts[1], parts[2], parts[3][:2]
    if not (_is_hex(tid, 32) and _is_hex(sid, 16) and len(flags) == 2 and _HEX.issuperset(flags)):
        return None
    return tid.decode(), sid.decode(), bool(int(flags, 16) & 1)


def parse_b3(value: bytes) -> tuple[str, str, bool | None] | None:
    """(trace id, span id, sampled or None = defer) from a single ``b3`` header; 64-bit trace ids are padded.
    A bare sampling decision ("0", "1", "d") carries no ids: None."""
    parts = value.strip().lower().split(b"-")
    if len(parts) < 2:
        return None
    tid, sid = parts[0], parts[1]
    if len(tid) == 16:
        tid = b"0" * 16 + tid
    if not (_is_hex(tid, 32) and _is_hex(sid, 16)):
        return None
    sampled = None
    if len(parts) > 2:
        sampled = parts[2] in (b"1", b"d")
    return tid.decode(), sid.decode(), sampled


def parse_b3_multi(found: dict[bytes, bytes]) -> tuple[str, str, bool | None] | None:
    tid = found.get(b"x-b3-traceid", b"").strip().lower()
    sid = found.get(b"x-b3-spanid", b"").strip().lower()
    if len(tid) == 16:
        tid = b"0" * 16 + tid
    if not (_is_hex(tid, 32) and _is_hex(sid, 16)):
        return None
    flag = found.get(b"x-b3-flags", b"").strip()
    s = found.get(b"x-b3-sampled", b"").strip().lower()
    sampled = True if flag == b"1" else (s in (b"1", b"true") if s else None)
    return tid.decode(), sid.decode(), sampled


class Tracer:
    """Per-worker tracing for one generation's ``[tracing]`` table; the exporter outlives reloads."""

    def __init__(self, cfg: dict[str, Any], exporter: OtlpExporter | None) -> None:
        self.sample_rate = float(cfg["sample_rate"])
        props = cfg["propagation"]
        self.w3c = "tracecontext" in props
        self.b3 = "b3" in props
        self.b3multi = "b3multi" in props
        self.exporter = exporter
        self.always = self.sample_rate >= 1.0
        self.pool = ""            # hex digits from os.urandom, consumed from ``pos`` (see ``start``)
        self.pos = 0

    def _new_id(self, bits: int) -> str:
        v = _getrandbits(bits)
        while not v:
            v = _getrandbits(bits)
        return f"{v:0{bits // 4}x}"

    def start(self, ex: Exchange) -> None:
        """Read the incoming context from ``ex.headers``, start the spans, rewrite the tracing headers."""
        found: dict[bytes, bytes] | None = None
        kept = ex.headers
        for name, value in kept:
            # every tracing header starts with t, b or x: one byte test before lowercasing the name
            if (name[0] | 0x20) in b"tbx" and name.lower() in _TRACE_HEADERS:
                if found is None:
                    found = {}
                found.setdefault(name.lower(), value)
        if found is not None:
            kept = [h for h in kept if h[0].lower() not in _TRACE_HEADERS]
        ctx = None
        tracestate = None
        if found is not None:
            tp = found.get(b"traceparent")
            if tp is not None:
                ctx = parse_traceparent(tp)
                if ctx is not None:
                    tracestate = found.get(b"tracestate")
            if ctx is None and b"b3" in found:
                ctx = parse_b3(found[b"b3"])
            if ctx is None and b"x-b3-traceid" in found:
                ctx = parse_b3_multi(found)
        # ids: hex digits sliced off a pool of OS randomness (formatting a random int as hex costs more)
        i = self.pos
        pool = self.pool
        if i + 64 > len(pool):
            pool = self.pool = _urandom(POOL_BYTES).hex()
            i = 0
        if ctx is None:
            self.pos = i + 64
            trace_id, parent_id = pool[i : i + 32], ""
            i += 32
            if trace_id == _ZERO32:                   # all-zero ids are invalid (probability 2**-128)
                trace_id = self._new_id(128)
            sampled = self.always or random.random() < self.sample_rate
        else:
            self.pos = i + 32
            trace_id, parent_id, s = ctx
            sampled = (self.always or random.random() < self.sample_rate) if s is None else s
        span_id, client_id = pool[i : i + 16], pool[i + 16 : i + 32]   # the server span's and the client span's
        if span_id == _ZERO or client_id == _ZERO:    # all-zero ids are invalid (probability 2**-63)
            span_id, client_id = self._new_id(64), self._new_id(64)
        # no clock read here: the span's times are derived from the exchange's when it is exported (finish)
        span = Span.__new__(Span)
        span.trace_id, span.span_id, span.parent_id, span.client_id = trace_id, span_id, parent_id, client_id
        span.sampled, span.tracestate = sampled, tracestate
        ex.span = span
        flag = "1" if sampled else "0"
        if self.w3c:
            kept.append((b"traceparent", f"00-{trace_id}-{client_id}-0{flag}".encode()))
            if tracestate is not None:
                kept.append((b"tracestate", tracestate))
        if self.b3:
            kept.append((b"b3", f"{trace_id}-{client_id}-{flag}-{span_id}".encode()))
        if self.b3multi:
            kept += ((b"X-B3-TraceId", trace_id.encode()), (b"X-B3-SpanId", client_id.encode()),
                     (b"X-B3-ParentSpanId", span_id.encode()), (b"X-B3-Sampled", flag.encode()))
        ex.headers = kept

    def finish(self, ex: Exchange, span: Span, now: float, entrypoint: str) -> None:
        """The exchange is over: queue its spans (server, and client when a backend was called)."""
        exporter = self.exporter
        if exporter is None or not span.sampled:
            return
        end_ns = _time_ns()                               # ``now`` was read just before, on the monotonic clock
        start_ns = end_ns - int((now - ex.t0) * 1e9)
        status = ex.status
        route, service = ex.route, ex.service
        method = ex.method.decode("latin-1")
        target = getattr(ex, "target", b"/")
        path = target.partition(b"?")[0].decode("latin-1")
        attrs = [("http.request.method", method), ("url.path", path), ("http.response.status_code", status),
                 ("a3s.entrypoint", entrypoint)]
        if route is not None:
            attrs.append(("http.route", route.name))
        if service is not None:
            attrs.append(("a3s.service", service.name))
        grpc_status = ex.grpc_status                      # set on gRPC calls only (http2.Stream.note_grpc_status)
        if grpc_status is not None:
            attrs.append(("rpc.grpc.status_code", grpc_status))
        error = status == 0 or status >= 500
        name = f"{method} {route.name}" if route is not None else method
        exporter.add((span.trace_id, span.span_id, span.parent_id, name, SPAN_KIND_SERVER, start_ns, end_ns,
                      error, attrs))
        if ex.t_up:
            up_start = start_ns + int((ex.t_up - ex.t0) * 1e9)
            backend = ex.backend
            url = backend.shown_url if backend is not None else ""
            exporter.add((span.trace_id, span.client_id, span.span_id, f"{method} upstream", SPAN_KIND_CLIENT,
                          up_start, end_ns, error, [("http.request.method", method), ("server.address", url),
                                                    ("http.response.status_code", status)]))


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def encode_otlp(spans: list[tuple], service_name: str, worker_slot: int) -> bytes:
    """An OTLP/HTTP JSON ``ExportTraceServiceRequest`` (ids as hex strings, times as decimal strings)."""
    out = []
    for trace_id, span_id, parent_id, name, kind, start_ns, end_ns, error, attrs in spans:
        s: dict[str, Any] = {
            "traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
            "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(max(end_ns, start_ns)),
            "attributes": [_attr(k, v) for k, v in attrs],
            "status": {"code": STATUS_ERROR} if error else {"code": STATUS_UNSET},
        }
        if parent_id:
            s["parentSpanId"] = parent_id
        out.append(s)
    resource = {"attributes": [_attr("service.name", service_name), _attr("host.name", socket.gethostname()),
                               _attr("process.pid", os.getpid()), _attr("a3s.worker", worker_slot)]}
    return orjson.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [
        {"scope": {"name": "a3s-gateway"}, "spans": out}]}]})


class OtlpExporter:
    """Batches spans and posts them to an OTLP/HTTP JSON endpoint; drops (and counts) what it cannot send."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cfg: dict[str, Any], service_name: str, slot: int,
                 count: Any) -> None:
        self.loop = loop
        self.slot = slot
        self.count = count                 # count(kind, n): kind "exported" | "dropped"
        self.queue: list[tuple] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.session: Any = None
        self.configure(cfg, service_name)

    def configure(self, cfg: dict[str, Any], service_name: str) -> None:
        self.endpoint = cfg["endpoint"]
        self.headers = {"Content-Type": "application/json", **cfg["headers"]}
        self.batch_size = cfg["batch_size"]
        self.max_queue = cfg["max_queue"]
        self.flush_interval = cfg["flush_interval"]
        self.timeout = cfg["timeout"]
        self.service_name = service_name
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    def add(self, span: tuple) -> None:
        q = self.queue
        if len(q) >= self.max_queue:
            self.count("dropped", 1)
            return
        q.append(span)
        if len(q) == self.batch_size:
            self.wake.set()

    async def _run(self) -> None:
        import aiohttp  # only workers that export pay for the client

        self.session = aiohttp.ClientSession()
        try:
            while True:
                if len(self.queue) < self.batch_size:
                    try:
                        await asyncio.wait_for(self.wake.wait(), self.flush_interval)
                    except TimeoutError:
                        pass
                self.wake.clear()
                while self.queue:
                    batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
                    await self._post(aiohttp, batch)
                    if len(self.queue) < self.batch_size:
                        break
        finally:
            await self.session.close()

    async def _post(self, aiohttp: Any, batch: list[tuple]) -> None:
        body = encode_otlp(batch, self.service_name, self.slot)
        try:
            async with self.session.post(self.endpoint, data=body, headers=self.headers,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                await resp.read()
                ok = resp.status < 300
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            ok = False
            log.warning(f"span export to {self.endpoint} failed: {e!r}")
        if ok:
            self.count("exported", len(batch))
        else:
            self.count("dropped", len(batch))

    async def flush(self, timeout: float = 2.0) -> None:
        """Send what is queued (used when the worker stops)."""
        if not self.queue or self.session is None:
            return
        import aiohttp

        batch, self.queue = self.queue, []
        try:
            await asyncio.wait_for(self._post(aiohttp, batch), timeout)
        except TimeoutError:
            self.count("dropped", len(batch))

    def close(self) -> asyncio.Task | None:
        """Stop exporting. Returns the export task, whose exit closes the HTTP session: a stopping worker awaits
        it (a reload that turns tracing off lets it finish on the running loop)."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
        return task
