"""The access log: one line per finished request, JSON (orjson) or Common Log Format, off by default.

Lines are built on the event loop when an exchange is accounted and kept in a per-worker buffer. Every
``flush_interval`` (or as soon as ``buffer_size`` bytes are waiting) the buffer goes out as one chunk: a
regular file gets it with one ``os.write`` from the loop (a page-cache append), standard output and anything
that could block (a pipe, a backlog) go through a writer thread, so the loop never waits for a full pipe. If
the writer falls more than ``MAX_BACKLOG`` bytes behind, new lines are dropped and counted
(``a3s_gateway_access_log_dropped_total``) instead of growing memory.

Files are opened with O_APPEND, so every worker appends whole chunks to the same file and logrotate's
``copytruncate`` works; SIGUSR1 (sent to the master, which forwards it to every worker) makes each writer
reopen the path, for a ``create``-style rotation. Standard output is fd 1, shared with the master.

JSON fields (``ACCESS_LOG_FIELDS`` in the config schema): time (RFC 3339 UTC, milliseconds), client_ip,
method, host, path, query, protocol (HTTP/1.0, HTTP/1.1 or HTTP/2.0: an HTTP/2 stream is one request), status
(0: no response was sent; a gRPC call's HTTP status), request_bytes, response_bytes, duration_ms, upstream_ms
(from sending the request upstream to the end of the response, null when no backend was called), router,
service, backend, entrypoint, worker, trace_id and span_id (with tracing on), user_agent, reason (the error
message of a response the gateway wrote itself), headers (captured request headers; those in
``redact_headers`` read "***"), ai (requests through ``ai-fallback``: the model, the estimated input tokens and
each attempt's target, model and outcome, in order).
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

import orjson

from ...shared import log as gwlog

if TYPE_CHECKING:
    from ..exchange import Downstream, Exchange


log = gwlog.get("access_log")

MAX_BACKLOG = 16 << 20          # bytes handed to the writer thread and not yet written
INLINE_MAX = 1 << 20            # a regular file takes chunks up to this size from the event loop directly
_REOPEN = object()
_STOP = object()
ESCAPED_MAX = 4096              # distinct host/path/user-agent values kept JSON-encoded, then start over
ESCAPED_LEN = 256               # ... of at most this many bytes each (at most ~2 MiB in all)
_dumps = orjson.dumps
_time = time.time
# Numbers come pre-formatted from _DEC/_FRAC (``b"%d" % n`` costs several times a list index, and a float's repr
# even more); milliseconds are written as integer.3-digits ("1.500" = 1.5). The fast path (``AccessLog._json``)
# joins the line from literal pieces and these: a join copies, ``%`` formatting parses its template every time.
_DEC = [b"%d" % i for i in range(10000)]
_FRAC = [b"%03d" % i for i in range(1000)]
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Writer:
    """A file (or standard output) and the thread that writes to it; shared by the generations that use
    the same path."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.queue: SimpleQueue = SimpleQueue()
        self.enqueued = 0           # written only by the event loop thread
        self.written = 0            # written only by the writer thread
        self.failed_lines = 0       # lines the writer thread could not write; written only by it
        self.failed_seen = 0        # failed_lines already counted as dropped; written only by the event loop
        self.fd = -1
        self.inline = False         # write from the event loop (see ``submit``)
        self.error_logged = False
        self._open()
        self.thread = threading.Thread(target=self._run, name=f"access-log:{path or 'stdout'}", daemon=True)
        self.thread.start()

    def _open(self) -> None:
        if self.path is None:
            self.fd = 1
            self.inline = False
            return
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self.error_logged = False
            mode = os.fstat(self.fd).st_mode
            self.inline = stat.S_ISREG(mode) or stat.S_ISCHR(mode) and not os.isatty(self.fd)
        except OSError as e:
            self.fd = -1
            self.inline = False
            log.error(f"cannot open access log {self.path}: {e.strerror or e}")

    def submit(self, chunk: bytes) -> bool:
        """Write ``chunk``, or queue it for the thread; False (dropped) when the writer is too far behind.

        A regular file (or a character device such as /dev/null) whose thread has nothing pending is written
        right here with one ``os.write``: a page-cache append of a buffer costs less than waking the thread and
        passing the GIL back and forth. Pipes and terminals (standard output), big chunks, a partial write and
        anything queued before (order is kept) go to the thread."""
        if self.inline and self.enqueued == self.written and len(chunk) <= INLINE_MAX and self.fd >= 0:
            try:
                n = os.write(self.fd, chunk)
            except OSError:
                n = 0
            if n == len(chunk):
                return True
            chunk = chunk[n:]
        if self.enqueued - self.written > MAX_BACKLOG:
            return False
        self.enqueued += len(chunk)
        self.queue.put(chunk)
        return True

    def reopen(self) -> None:
        self.enqueued += 1          # the thread counts it as written once done: no inline write meanwhile
        self.queue.put(_REOPEN)

    def close(self, timeout: float = 2.0) -> None:
        self.inline = False         # the thread closes the fd: nothing may be written to it from here on
        self.queue.put(_STOP)
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                break
            if item is _REOPEN:
                if self.path is not None:
                    if self.fd >= 0:
                        os.close(self.fd)
                    self._open()
                self.written += 1
                continue
            view = memoryview(item)
            try:
                while view and self.fd >= 0:
                    n = os.write(self.fd, view)
                    view = view[n:]
            except OSError as e:
                if not self.error_logged:
                    self.error_logged = True
                    log.error(f"cannot write access log {self.path or 'stdout'}: {e.strerror or e}")
            if view:
                # not written (disk full, file not open): lines whose newline did not reach the file are lost
                self.failed_lines += item.count(b"\n", len(item) - len(view))
            self.written += len(item)
        if self.path is not None and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Clock:
    """RFC 3339 / CLF timestamps, formatted once per second and completed with milliseconds."""

    __slots__ = ("clf", "rfc", "rfcb", "sec")

    def __init__(self) -> None:
        self.sec = -1
        self.rfc = ""
        self.rfcb = b""
        self.clf = ""

    def rfc3339(self, t: float) -> str:
        sec = int(t)
        if sec != self.sec:
            self._set(sec)
        return f"{self.rfc}.{int((t - sec) * 1000):03d}Z"

    def common(self, t: float) -> str:
        sec = int(t)
        if sec != self.sec:
            self._set(sec)
        return self.clf

    def _set(self, sec: int) -> None:
        tm = time.gmtime(sec)
        self.sec = sec
        self.rfc = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
        self.rfcb = self.rfc.encode()
        self.clf = (f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year:04d}:{tm.tm_hour:02d}:{tm.tm_min:02d}:"
                    f"{tm.tm_sec:02d} +0000")


def _reason(ex: Exchange) -> str | None:
    """The message of an error response the gateway wrote itself ({"error": ...} JSON body)."""
    answer = ex.local
    if answer is None or ex.status < 400:
        return None
    body = answer.body
    try:
        msg = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return msg if isinstance(msg, str) else None


def _ai(ex: Exchange) -> dict[str, Any]:
    """The ``ai`` field: the request's model, estimated input tokens and every ai-fallback attempt."""
    body = ex.ai_body
    return {"model": getattr(body, "model", None), "estimated_tokens": ex.ai_tokens,
            "attempts": [{"target": t, "model": m, "outcome": o} for t, m, o in ex.ai_attempts or ()]}


class AccessLog:
    """One generation's ``[access_log]`` settings over a shared ``Writer``."""

    def __init__(self, cfg: dict[str, Any], writer: Writer, loop: asyncio.AbstractEventLoop, slot: int,
                 count: Callable[[str, int], None]) -> None:
        self.writer = writer
        self.loop = loop
        self.slot = slot
        self.count = count
        fields = cfg["fields"] or None
        exclude = set(cfg["exclude_fields"])
        self.only = None if fields is None and not exclude else (
            set(fields) if fields is not None else None, exclude)
        self.drop_query = cfg["drop_query"]
        self.capture = {h.lower().encode(): h for h in cfg["headers"]}
        self.redact = {h.lower().encode() for h in cfg["redact_headers"]}
        self.ranges = []
        for r in cfg["filters"]["status"]:
            lo, _, hi = r.partition("-")
            self.ranges.append((int(lo), int(hi or lo)))
        self.min_duration = cfg["filters"]["min_duration"]
        self.filtered = bool(self.ranges) or self.min_duration > 0
        # the line format, chosen once: Common Log Format, the JSON fast path, or a dict for field selections
        self.json = cfg["format"] != "common"
        self.fast = self.json and self.only is None and not self.capture
        self.format = self._json if self.fast else self._json_dict if self.json else self._common
        self.buffer_size = cfg["buffer_size"]
        self.flush_interval = cfg["flush_interval"]
        self.buf: list[bytes] = []
        self.size = 0
        self.timer: asyncio.TimerHandle | None = None
        self.clock = Clock()
        self.consts: dict[tuple[int, int, str], bytes] = {}   # per (route, backend, entrypoint): names
        self.escaped: dict[bytes, bytes] = {}   # host, path and user-agent values -> JSON strings (bounded)
        self._wants_ai = self.only is None or (("ai" in self.only[0]) if self.only[0] is not None
                                                else "ai" not in self.only[1])

    def log(self, ex: Exchange, conn: Downstream, now: float) -> None:
        seconds = now - ex.t0
        status = ex.status
        if self.filtered and not self._wanted(status, seconds):
            return
        line = self._json(ex, conn, now, seconds, status) if self.fast else self.format(ex, conn, now, seconds, status)
        if ex.ai_attempts is not None and self.json and self._wants_ai:
            line = line[:-2] + b',"ai":' + _dumps(_ai(ex)) + b"}\n"
        self.buf.append(line)
        self.size += len(line)
        if self.size >= self.buffer_size:
            self.flush()
        elif self.timer is None:
            self.timer = self.loop.call_later(self.flush_interval, self.flush)

    def _wanted(self, status: int, seconds: float) -> bool:
        """The ``filters``: a status in one of the ranges (when given) and at least ``min_duration``."""
        if self.ranges and not any(lo <= status <= hi for lo, hi in self.ranges):
            return False
        return seconds >= self.min_duration

    def _escape(self, value: bytes) -> bytes:
        """``value`` as a JSON string, remembered when short (a miss of ``escaped``)."""
        esc = self.escaped
        if len(esc) >= ESCAPED_MAX:
            esc.clear()
        js = _dumps(value.decode("latin-1"))
        if len(value) <= ESCAPED_LEN:
            esc[value] = js
        return js

    def _const(self, ex: Exchange, conn: Downstream, key: tuple[int, int, str]) -> bytes:
        """The router, service, backend, entrypoint and worker fields, encoded once per route and backend."""
        route, service, backend = ex.route, ex.service, ex.backend
        const = self.consts[key] = _dumps({
            "router": route.name if route is not None else None,
            "service": service.name if service is not None else None,
            "backend": backend.shown_url if backend is not None else None,
            "entrypoint": conn.entrypoint, "worker": self.slot})[1:-1]
        return const

    def _json(self, ex: Exchange, conn: Downstream, now: float, seconds: float, status: int) -> bytes:
        """The default line (every field, no captured headers), joined from literal pieces in the documented
        order; strings that come from the request are escaped by orjson (and remembered), the per-route names are
        encoded once. Same output as ``_json_dict`` (tests/unit/test_metrics_observations.py checks it)."""
        path, _, query = ex.target.partition(b"?")
        esc = self.escaped
        ua = b"null"
        for name, value in ex.headers:
            if len(name) == 10 and name.lower() == b"user-agent":
                ua = esc.get(value) or self._escape(value)
                break
        host = ex.host
        key = (id(ex.route), id(ex.backend), conn.entrypoint)
        span = ex.span
        t = _time()
        sec = int(t)
        clock = self.clock
        if sec != clock.sec:
            clock._set(sec)
        us = int(seconds * 1e6)
        ms = us // 1000
        upstream = b"null"
        if ex.t_up:
            up = int((now - ex.t_up) * 1e6)
            upstream = (_DEC[up // 1000] if up < 10000000 else b"%d" % (up // 1000)) + b"." + _FRAC[up % 1000]
        n_in, n_out = ex.req_bytes, ex.resp_bytes
        return b"".join((
            b'{"time":"', clock.rfcb, b".", _FRAC[int((t - sec) * 1000)], b'Z","client_ip":"', conn.peer,
            b'","method":"', ex.method, b'","host":', esc.get(host) or self._escape(host),
            b',"path":', esc.get(path) or self._escape(path),
            b',"query":', b"null" if not query or self.drop_query else _dumps(query.decode("latin-1")),
            b',"protocol":"', b"HTTP/1.1" if ex.http11 else conn.protocol,
            b'","status":', _DEC[status] if status < 10000 else b"%d" % status,
            b',"request_bytes":', _DEC[n_in] if n_in < 10000 else b"%d" % n_in,
            b',"response_bytes":', _DEC[n_out] if n_out < 10000 else b"%d" % n_out,
            b',"duration_ms":', _DEC[ms] if ms < 10000 else b"%d" % ms, b".", _FRAC[us % 1000],
            b',"upstream_ms":', upstream, b",", self.consts.get(key) or self._const(ex, conn, key),
            b',"trace_id":', b'null,"span_id":null' if span is None else b"".join((
                b'"', span.trace_id.encode(), b'","span_id":"', span.span_id.encode(), b'"')),
            b',"user_agent":', ua, b',"reason":', _dumps(_reason(ex)) if ex.local is not None else b"null",
            b"}\n"))

    def _json_dict(self, ex: Exchange, conn: Downstream, now: float, seconds: float, status: int) -> bytes:
        target = getattr(ex, "target", b"")
        path, _, query = target.partition(b"?")
        headers = getattr(ex, "headers", ())
        ua = None
        captured = None
        capture = self.capture
        if capture:
            for name, value in headers:
                ln = name.lower()
                if ln == b"user-agent":
                    ua = value.decode("latin-1")
                if ln in capture:
                    if captured is None:
                        captured = {}
                    captured[capture[ln]] = "***" if ln in self.redact else value.decode("latin-1")
        else:
            for name, value in headers:
                if len(name) == 10 and name.lower() == b"user-agent":
                    ua = value.decode("latin-1")
                    break
        route, service, backend, span = ex.route, ex.service, ex.backend, ex.span
        entry = {
            "time": self.clock.rfc3339(time.time()),
            "client_ip": conn.client_ip,
            "method": ex.method.decode("latin-1"),
            "host": getattr(ex, "host", b"").decode("latin-1"),
            "path": path.decode("latin-1"),
            "query": None if self.drop_query or not query else query.decode("latin-1"),
            "protocol": "HTTP/1.1" if ex.http11 else conn.protocol.decode(),
            "status": status,
            "request_bytes": ex.req_bytes,
            "response_bytes": ex.resp_bytes,
            "duration_ms": int(seconds * 1e6) / 1000,
            "upstream_ms": int((now - ex.t_up) * 1e6) / 1000 if ex.t_up else None,
            "router": route.name if route is not None else None,
            "service": service.name if service is not None else None,
            "backend": backend.shown_url if backend is not None else None,
            "entrypoint": conn.entrypoint,
            "worker": self.slot,
            "trace_id": span.trace_id if span is not None else None,
            "span_id": span.span_id if span is not None else None,
            "user_agent": ua,
            "reason": _reason(ex) if ex.local is not None else None,
        }
        if captured is not None:
            entry["headers"] = captured
        only = self.only
        if only is not None:
            include, exclude = only
            entry = {k: v for k, v in entry.items() if (include is None or k in include) and k not in exclude}
        return orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)

    def _common(self, ex: Exchange, conn: Downstream, now: float, seconds: float, status: int) -> bytes:
        target = ex.target
        if self.drop_query:
            target = target.partition(b"?")[0]
        return b'%s - - [%s] "%s %s %s" %d %s\n' % (
            conn.client_ip.encode() or b"-", self.clock.common(time.time()).encode(), ex.method, target,
            b"HTTP/1.1" if ex.http11 else conn.protocol, status,
            b"%d" % ex.resp_bytes if ex.resp_bytes else b"-")

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.buf:
            return
        n = len(self.buf)
        chunk = b"".join(self.buf)
        self.buf = []
        self.size = 0
        if self.writer.submit(chunk):
            self.count("lines", n)
        else:
            self.count("dropped", n)
