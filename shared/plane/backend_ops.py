"""``BackendOps``: the per-request plane words of one backend, as a native class when compiled.

``Plane.backend_ops(idx)`` gives one per backend and generation. The balancer asks ``is_healthy()`` at every pick,
the exchange counts the request in flight (``inc``/``dec``) and ends the failure streaks on a good answer
(``passive_success``, or ``outlier_success`` with ``consecutive_gateway_failure`` on). Compiled
(``backend_ops.pxd``), each is a C method over ``Words``, the plane's typed views of the health table and the
in-flight counters, so a call costs no Python frame. The same words and single-writer rules as ``Plane``'s general
methods (``health.py``, ``counters.py``): active health and ``down_until`` are read, this worker's in-flight word
and the streak bases are written with aligned stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .health import ACTIVE_DOWN, BASE, DOWN_UNTIL, GW_BASE, GW_LAST, LAST_FAIL
from .health import REC as HEALTH_REC


class Clock(Protocol):
    now: float       # the worker's coarse monotonic clock, advanced by its sweep


class Words:
    """The health table (as int64 and float64 words) and the in-flight counters: one per writable plane, released
    by ``Plane.close`` (compiled, a typed view holds an export of the segment's buffer)."""

    def __init__(self, hq: memoryview, hd: memoryview, inf: memoryview) -> None:
        self.hq = hq
        self.hd = hd
        self.inf = inf

    def close(self) -> None:
        self.hq = self.hd = self.inf = None


class BackendOps:
    def __init__(self, words: Words, backend: int, inflight: int, clock: Clock,
                 refuse: Callable[[int], None] | None) -> None:
        """``inflight``: this worker's in-flight word of the backend; a master's plane has none (-1) and
        ``refuse`` raises its refusal instead."""
        self.words = words
        r = backend * HEALTH_REC
        self.active, self.down_until = r + ACTIVE_DOWN, r + DOWN_UNTIL
        self.base, self.last_fail, self.gw_base, self.gw_last = r + BASE, r + LAST_FAIL, r + GW_BASE, r + GW_LAST
        self.inflight = inflight
        self.backend = backend
        self.clock = clock
        self.refuse = refuse

    def is_healthy(self) -> bool:
        """Active health and not passively down, at the clock's ``now``."""
        w = self.words
        return not w.hq[self.active] and self.clock.now >= w.hd[self.down_until]

    def passive_success(self) -> None:
        hq = self.words.hq
        last = hq[self.last_fail]
        if hq[self.base] != last:
            hq[self.base] = last

    def outlier_success(self) -> None:
        """Both streaks end (``consecutive_gateway_failure`` on: any answer but a failure ends it)."""
        hq = self.words.hq
        last = hq[self.last_fail]
        if hq[self.base] != last:
            hq[self.base] = last
        last = hq[self.gw_last]
        if hq[self.gw_base] != last:
            hq[self.gw_base] = last

    def inc(self) -> None:
        if self.inflight < 0:
            self.refuse(self.backend)
            return
        inf = self.words.inf
        inf[self.inflight] += 1

    def dec(self) -> None:
        if self.inflight < 0:
            self.refuse(self.backend)
            return
        inf = self.words.inf
        inf[self.inflight] -= 1
