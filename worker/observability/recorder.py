"""``Recorder``: what ``Observability`` does once per finished exchange, as a native class when compiled.

One call from ``exchange.account`` per exchange: the plane's ``Ledger`` counts it (status classes and bytes per
router, service and backend, the duration histograms, the entrypoint/method/class count, gateway-written
responses, retries), then the access log writes its line and the tracer ends its spans. Compiled
(``recorder.pxd``), the exchange's fields are struct reads and the ledger, access log and tracer are C calls.
``Observability.configure`` builds a new one at every generation (the access log, tracer or entrypoints may
have changed); a failure of the access log or tracer is counted and logged, never raised into the exchange.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from ...shared import log as gwlog
from ...shared.plane.ledger import Ledger
from ...shared.plane.observations import METHOD_INDEX, OTHER_METHOD
from .access_log import AccessLog
from .tracing import Tracer

if TYPE_CHECKING:
    from ..exchange import Downstream, Exchange

log = gwlog.get("worker")


class Recorder:
    def __init__(self, ledger: Ledger, ep_base: dict[str, int], access_log: AccessLog | None,
                 tracer: Tracer | None, failures: int = 0) -> None:
        self.ledger = ledger
        self.ep_base = ep_base         # entrypoint -> its first word in the observations' requests block
        self.access_log = access_log
        self.tracer = tracer
        self.failures = failures       # access log / tracing failures so far (carried over from the last one)

    def finish(self, ex: Exchange, conn: Downstream) -> None:
        now = perf_counter()
        route, service, backend = ex.route, ex.service, ex.backend
        status = ex.status
        self.ledger.account(route.idx if route is not None else -1, service.idx if service is not None else -1,
                            backend.idx if backend is not None else -1,
                            self.ep_base.get(conn.entrypoint, 0) + METHOD_INDEX.get(ex.method, OTHER_METHOD),
                            status, ex.req_bytes, ex.resp_bytes, now - ex.t0, ex.local is not None and status >= 400,
                            ex.attempts)
        access_log, tracer = self.access_log, self.tracer
        try:
            if access_log is not None:
                access_log.log(ex, conn, now)
            span = ex.span
            if span is not None and tracer is not None:
                tracer.finish(ex, span, now, conn.entrypoint)
        except Exception:
            self.failures += 1
            if self.failures in (1, 10, 100, 1000):
                log.exception("access log / tracing failed (%d times so far)", self.failures)
