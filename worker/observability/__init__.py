"""What a worker records about the traffic it serves: metrics observations on the shared-memory plane,
the access log and distributed tracing.

``Observability`` is one per worker (``worker.obs``). The protocol calls two hooks:
- ``tracer.start(ex)`` when a request head is parsed, only when ``tracer`` is not None (tracing on);
- ``recorder.finish(ex, conn)`` exactly once per exchange, from ``exchange.account`` (an HTTP/2 stream's
  ``conn`` is its ``http2.Stream``, so streams are counted, logged and traced alike): the plane's ledger
  writes the status-class counts and bytes per router/service/backend, the duration histograms, request counts
  by entrypoint/method/status class, gateway-written responses and retries to this worker's rows on the plane
  (aligned stores, no lock), then the access log line and the spans (``recorder.py``).

``configure`` runs at every generation (reload): the access log and tracer follow the new ``[access_log]``
and ``[tracing]`` tables, while the writer thread (per path) and the span exporter are kept and reused.
A worker's open connections (by entrypoint and protocol) are written to the plane about once a second.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...shared.plane.observations import (
    GAUGES,
    MISC_NAMES,
    NMETHODS,
    PROTOCOLS,
    entrypoint_indices,
)
from .access_log import AccessLog, Writer
from .recorder import Recorder
from .tracing import OtlpExporter, Tracer

if TYPE_CHECKING:
    from ..process import Worker

CONNECTIONS_INTERVAL = 1.0
_MISC = {name: i for i, name in enumerate(MISC_NAMES)}


class Observability:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.access_log: AccessLog | None = None
        self.tracer: Tracer | None = None
        self.writers: dict[str | None, Writer] = {}
        self.exporter: OtlpExporter | None = None
        self.ep_index: dict[str, int] = {}
        self.ep_base: dict[str, int] = {}          # entrypoint -> its first word in the requests block
        self._gauges: asyncio.Task | None = None
        self.recorder: Recorder | None = None      # ``recorder.finish(ex, conn)``: once per exchange, per generation

    # -- per generation
    def configure(self, config: dict[str, Any]) -> None:
        w = self.worker
        self.ep_index = entrypoint_indices(config.get("entrypoints", {}))
        self.ep_base = {name: i * NMETHODS for name, i in self.ep_index.items()}
        if self._gauges is None:
            self._gauges = w.loop.create_task(self._connections_loop())
        al = config.get("access_log") or {}
        old = self.access_log
        if al.get("enabled"):
            path = al["path"]
            writer = self.writers.get(path)
            if writer is None:
                writer = self.writers[path] = Writer(path)
            self.access_log = AccessLog(al, writer, w.loop, w.slot, self._count_log)
        else:
            self.access_log = None
        if old is not None:
            old.flush()
        for path in [p for p in self.writers if self.access_log is None or p != self.access_log.writer.path]:
            self.writers.pop(path).close(timeout=0)
        tr = config.get("tracing") or {}
        if tr.get("enabled"):
            otlp = tr.get("otlp")
            if otlp:
                if self.exporter is None:
                    self.exporter = OtlpExporter(w.loop, otlp, tr["service_name"], w.slot, self._count_span)
                else:
                    self.exporter.configure(otlp, tr["service_name"])
            elif self.exporter is not None:
                self.exporter.close()
                self.exporter = None
            self.tracer = Tracer(tr, self.exporter)
        else:
            self.tracer = None
            if self.exporter is not None:
                self.exporter.close()
                self.exporter = None
        failures = self.recorder.failures if self.recorder is not None else 0
        self.recorder = Recorder(w.plane.ledger, self.ep_base, self.access_log, self.tracer, failures)

    # -- plane counters
    def _count_log(self, kind: str, n: int) -> None:
        self.worker.plane.add_misc(_MISC["access_log_lines" if kind == "lines" else "access_log_dropped"], n)

    def _count_span(self, kind: str, n: int) -> None:
        self.worker.plane.add_misc(_MISC["spans_exported" if kind == "exported" else "spans_dropped"], n)

    async def _connections_loop(self) -> None:
        from ..http2 import H2Server

        w = self.worker
        nproto = len(PROTOCOLS)
        while True:
            counts = [0] * GAUGES
            ep_index = self.ep_index
            for c in list(w.connections):
                i = ep_index.get(c.entrypoint, 0) * nproto + (1 if isinstance(c, H2Server) else 0)
                counts[i] += 1
            w.plane.set_connections(counts)
            self._count_write_failures()
            await asyncio.sleep(CONNECTIONS_INTERVAL)

    def _count_write_failures(self) -> None:
        """Lines a writer thread could not write (disk full) count as dropped, like lines it fell behind on."""
        for writer in self.writers.values():
            failed = writer.failed_lines
            if failed != writer.failed_seen:
                self._count_log("dropped", failed - writer.failed_seen)
                writer.failed_seen = failed

    # -- signals and shutdown
    def reopen(self) -> None:
        """SIGUSR1: reopen access log files (after logrotate moved them)."""
        if self.access_log is not None:
            self.access_log.flush()
        for writer in self.writers.values():
            writer.reopen()

    async def close(self) -> None:
        if self._gauges is not None:
            self._gauges.cancel()
        if self.access_log is not None:
            self.access_log.flush()
        if self.exporter is not None:
            await self.exporter.flush()
            task = self.exporter.close()
            if task is not None:
                await asyncio.wait([task], timeout=2.0)
        for writer in self.writers.values():
            await asyncio.get_running_loop().run_in_executor(None, writer.close)
        self.writers.clear()
