"""``circuit-breaker``: stop sending requests to a router's backends after consecutive failures, node-wide.

State lives on the shared-memory plane (``shared/plane/breaker.py``): ``failure_threshold`` consecutive
failures across all workers open the breaker; while open, requests get 503 JSON without touching a backend;
after ``cooldown_secs`` exactly one request node-wide is let through as a trial, and ``success_threshold``
successful trials close it again (a failed trial re-opens it).

A failure is a finished exchange whose status is in ``failure_statuses`` — backend answers and the gateway's
own 502/504 for unreachable or silent backends alike (recorded when the exchange is accounted, ``ex.on_done``).
An exchange the client abandoned before any response (status 0) records nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply, error_reply
from ._support.plane_slot import slot_index

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

OPEN = "Service unavailable (circuit breaker open)"


class CircuitBreaker(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        assert worker is not None, "circuit-breaker lives on the worker's shared-memory plane"
        self.plane = worker.plane
        self.idx = slot_index(worker, "breakers", name)
        self.failure_threshold = params["failure_threshold"]
        self.success_threshold = params["success_threshold"]
        self.cooldown = params["cooldown_secs"]
        self.failures = frozenset(params["failure_statuses"])

    def on_request(self, ex: Exchange) -> Reply | None:
        if not self.plane.breaker_allow(self.idx, time.monotonic(), self.cooldown):
            return error_reply(503, OPEN)
        ex.on_done = [*(ex.on_done or ()), self.record]
        return None

    def record(self, ex: Exchange) -> None:
        if ex.status:
            self.plane.breaker_record(self.idx, ex.status not in self.failures, time.monotonic(),
                                      self.failure_threshold, self.success_threshold)
