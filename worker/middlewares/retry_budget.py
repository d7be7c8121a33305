"""The ``retry`` middleware's budget (Envoy's ``retry_budget``): retries in flight on a service, node-wide, stay
within ``budget_percent`` of the requests in flight on it, or ``min_retry_concurrency`` when that is more.

A retry storm is what turns a slow backend into a dead one: every failed request doubles its load. The budget
caps the extra load at a share of the real one, across all workers (the plane's ``traffic`` table).

Invariants: an exchange holds at most one budget slot, taken at its first retry on the service its backend
belongs to (a service of services: the leaf that failed) and given back exactly once when the exchange ends,
whatever happens; a worker that dies gives its slots back (the master drops its column). A retry refused for
budget is not attempted (the failed answer stands) and counted in ``a3s_gateway_retries_budget_exhausted_total``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...shared.plane import Plane
    from ..exchange import Exchange


class RetryBudget:
    def __init__(self, percent: float, min_concurrency: int, plane: Plane) -> None:
        self.percent = percent
        self.min_concurrency = min_concurrency
        self.plane = plane

    def admit(self, ex: Exchange) -> bool:
        """Whether ``ex`` may be retried now; its first admitted retry takes a slot until it ends."""
        if ex.budget_service >= 0:
            return True
        service = ex.service
        plane, idx = self.plane, service.idx
        in_flight = sum(backend.inflight() for backend in service.backends)
        if plane.retry_active(idx) >= max(self.min_concurrency, in_flight * self.percent / 100):
            plane.retry_budget_exhausted(idx)
            return False
        plane.retry_change(idx, 1)
        ex.budget_service = idx
        done = ex.on_done if ex.on_done is not None else []
        done.append(self._give_back)
        ex.on_done = done
        return True

    def _give_back(self, ex: Exchange) -> None:
        self.plane.retry_change(ex.budget_service, -1)
