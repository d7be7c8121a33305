"""Circuit breakers shared by all workers: closed -> open -> half-open (one trial node-wide) -> closed/open.

Layout (segment ``breaker``):

    records    max_breakers x REC words (float words are read through a 'd' view of the same bytes):
                   0 STATE      int64  0 closed, 1 open, 2 half-open
                   1 OPENED_AT  float  monotonic seconds of the last trip
                   2 CLAIM_PID  int64  pid holding the half-open trial, 0 = none outstanding
                   3 CLAIM_AT   float  when that trial was claimed (it expires after ``cooldown``)
                   4 HALF_OK    int64  successful trials since the breaker went half-open
                   5 BASE       int64  failure total at the last reset (success in closed, trip, close)
                   6 LAST_FAIL  int64  failure total right after the latest failure
                   7 TRIPS      int64  closed/half-open -> open transitions (for status)
    failures   max_breakers x (max_workers + 1) int64: column 0 retired (master), column w + 1 cumulative
               failures recorded by worker w (single writer).

Transitions and who writes:
- closed: the hot path is one load (``allow`` -> True). Consecutive failures across workers are counted
  lock-free as in ``health``: sum(failures) - BASE; a success stores BASE = LAST_FAIL. The worker whose
  failure reaches ``failure_threshold`` takes the breaker's fcntl lock, re-checks, and trips
  (OPENED_AT first, then STATE, so a lock-free reader that sees "open" also sees its time).
- open: ``allow`` is False without a lock until ``OPENED_AT + cooldown``. After that, callers take the lock;
  the first one stores CLAIM_AT, CLAIM_PID, then STATE = half-open and gets True: the single trial.
  Everyone else sees the claim (lock-free) and gets False.
- half-open: only the claiming process's ``record`` counts (results of requests admitted before the trip
  are ignored). Success: HALF_OK += 1, closing once it reaches ``success_threshold``, otherwise releasing the
  claim so the next caller gets the next trial. Failure: back to open with a fresh OPENED_AT.
  A trial whose worker died without recording expires after ``cooldown`` and can be claimed again.
All multi-word transitions happen under the lock (one writer at a time); the kernel releases the lock of a
``kill -9``ed holder, and each store order above leaves a consistent state if the holder dies mid-way.
"""

from __future__ import annotations

import os

from .layout import PlaneLayout
from .locks import RangeLocks
from .segments import Segment

REC = 8
STATE, OPENED_AT, CLAIM_PID, CLAIM_AT, HALF_OK, BASE, LAST_FAIL, TRIPS = range(8)
CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = ("closed", "open", "half-open")


class BreakerTable:
    SEGMENT = "breaker"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.max_breakers * (REC + layout.max_workers + 1) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout, locks: RangeLocks | None, lock_base: int) -> None:
        n = layout.max_breakers * REC * 8
        self.q = seg.view(0, n, "q")
        self.d = seg.view(0, n, "d")
        self.W1 = layout.max_workers + 1
        self.f = seg.view(n, layout.max_breakers * self.W1 * 8, "q")
        self.locks = locks
        self.lock_base = lock_base
        self.pid = os.getpid()

    def failures(self, i: int, rows: int) -> int:
        s = i * self.W1
        return sum(self.f[s : s + 1 + rows])

    def allow(self, i: int, now: float, cooldown: float) -> bool:
        q, d, r = self.q, self.d, i * REC
        st = q[r + STATE]
        if st == CLOSED:
            return True
        if st == OPEN:
            if now < d[r + OPENED_AT] + cooldown:
                return False
        elif q[r + CLAIM_PID] and now < d[r + CLAIM_AT] + cooldown:
            return False
        k = self.lock_base + i
        self.locks.acquire(k)
        try:
            st = q[r + STATE]
            if st == CLOSED:
                return True
            if (st == OPEN and now >= d[r + OPENED_AT] + cooldown) or (
                st == HALF_OPEN and (not q[r + CLAIM_PID] or now >= d[r + CLAIM_AT] + cooldown)
            ):
                d[r + CLAIM_AT] = now
                q[r + CLAIM_PID] = self.pid
                if st == OPEN:
                    q[r + HALF_OK] = 0
                    q[r + STATE] = HALF_OPEN
                return True
            return False
        finally:
            self.locks.release(k)

    def record(self, i: int, col: int, success: bool, now: float, failure_threshold: int,
               success_threshold: int, rows: int) -> None:
        q, r = self.q, i * REC
        total = 0
        if not success:
            f = self.f
            j = i * self.W1 + col
            f[j] = f[j] + 1
            s = i * self.W1
            total = sum(f[s : s + 1 + rows])
            q[r + LAST_FAIL] = total
        st = q[r + STATE]
        if st == CLOSED:
            if success:
                last = q[r + LAST_FAIL]
                if q[r + BASE] != last:
                    q[r + BASE] = last
            elif total - q[r + BASE] >= failure_threshold:
                with self.locks.held(self.lock_base + i):
                    if q[r + STATE] == CLOSED:
                        self._trip(r, now, total)
        elif st == HALF_OPEN and q[r + CLAIM_PID] == self.pid:
            with self.locks.held(self.lock_base + i):
                if q[r + STATE] != HALF_OPEN or q[r + CLAIM_PID] != self.pid:
                    return
                if not success:
                    self._trip(r, now, total)
                    q[r + CLAIM_PID] = 0
                    return
                ok = q[r + HALF_OK] + 1
                q[r + HALF_OK] = ok
                if ok >= success_threshold:
                    total = self.failures(i, rows)
                    q[r + LAST_FAIL] = total
                    q[r + BASE] = total
                    q[r + STATE] = CLOSED
                q[r + CLAIM_PID] = 0

    def _trip(self, r: int, now: float, total: int) -> None:
        q = self.q
        self.d[r + OPENED_AT] = now
        q[r + BASE] = total
        q[r + TRIPS] = q[r + TRIPS] + 1
        q[r + STATE] = OPEN

    def state(self, i: int) -> str:
        return STATE_NAMES[self.q[i * REC + STATE]]

    def fold(self, slot: int) -> None:
        f, W1 = self.f, self.W1
        col = slot + 1
        for i, v in enumerate(f[col::W1].tolist()):
            if v:  # zero first: a racing reader undercounts for a moment (no spurious trip)
                s = i * W1
                f[s + col] = 0
                f[s] = f[s] + v

    def reset(self, i: int, rows: int) -> None:
        q, r = self.q, i * REC
        with self.locks.held(self.lock_base + i):
            q[r + STATE] = CLOSED
            q[r + CLAIM_PID] = 0
            q[r + HALF_OK] = 0
            q[r + TRIPS] = 0
            self.d[r + OPENED_AT] = 0.0
            self.d[r + CLAIM_AT] = 0.0
            total = self.failures(i, rows)
            q[r + LAST_FAIL] = total
            q[r + BASE] = total

    def info(self, i: int, rows: int) -> dict:
        q, r = self.q, i * REC
        return {
            "state": STATE_NAMES[q[r + STATE]],
            "trips": q[r + TRIPS],
            "consecutive_failures": max(0, self.failures(i, rows) - q[r + BASE]),
        }

    def active(self) -> list[int]:
        q = self.q
        return [i for i, v in enumerate(q[STATE::REC].tolist()) if v or q[i * REC + TRIPS]]
