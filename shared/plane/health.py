"""Backend health: the active-check flag (master) and passive-health state (workers).

Layout (segment ``health``):

    records    max_backends x REC words:
                   0 ACTIVE_DOWN  int64  written only by whoever runs active checks (the master): 1 = failing
                   1 DOWN_UNTIL   float  monotonic seconds until which passive health keeps the backend out
                   2 BASE         int64  failure total at the last reset (success or trip)
                   3 LAST_FAIL    int64  failure total right after the latest failure
    failures   max_backends x (max_workers + 1) int64: backend b, column 0 = retired (master),
               column w + 1 = cumulative failures seen by worker w (single writer).

Zero everywhere means "healthy, no failures", so a fresh or reset slot is usable at once.

Passive health without locks: the consecutive-failure count is ``sum(failures[b]) - BASE``. A failure bumps
the worker's own column, sums the row and stores LAST_FAIL; when the count reaches ``threshold`` it stores
DOWN_UNTIL = now + cooldown and BASE = the sum (the count restarts, so after the cooldown the backend is
retried and needs ``threshold`` new failures to go down again). A success stores BASE = LAST_FAIL (two
loads and usually no store). DOWN_UNTIL, BASE and LAST_FAIL are single words that several workers may store;
each store is a whole, recent value, and a lost race only shifts the count by the failures that raced it.
"""

from __future__ import annotations

from .layout import PlaneLayout
from .segments import Segment

REC = 4
ACTIVE_DOWN, DOWN_UNTIL, BASE, LAST_FAIL = range(4)


class HealthTable:
    SEGMENT = "health"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.max_backends * (REC + layout.max_workers + 1) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        n = layout.max_backends * REC * 8
        self.q = seg.view(0, n, "q")
        self.d = seg.view(0, n, "d")
        self.W1 = layout.max_workers + 1
        self.f = seg.view(n, layout.max_backends * self.W1 * 8, "q")

    def failures(self, b: int, rows: int) -> int:
        s = b * self.W1
        return sum(self.f[s : s + 1 + rows])

    def passive_failure(self, b: int, col: int, now: float, threshold: int, cooldown: float, rows: int) -> bool:
        f, q = self.f, self.q
        i = b * self.W1 + col
        f[i] = f[i] + 1
        s = b * self.W1
        total = sum(f[s : s + 1 + rows])
        r = b * REC
        q[r + LAST_FAIL] = total
        if total - q[r + BASE] >= threshold:
            self.d[r + DOWN_UNTIL] = now + cooldown
            q[r + BASE] = total
            return True
        return False

    def passive_success(self, b: int) -> None:
        q, r = self.q, b * REC
        last = q[r + LAST_FAIL]
        if q[r + BASE] != last:
            q[r + BASE] = last

    def hold_down(self, b: int, until: float) -> None:
        """DOWN_UNTIL = ``until`` unless it is already later (a provider's cooldown; any worker stores it)."""
        r = b * REC + DOWN_UNTIL
        if self.d[r] < until:
            self.d[r] = until

    def down_until(self, b: int) -> float:
        return float(self.d[b * REC + DOWN_UNTIL])

    def is_healthy(self, b: int, now: float) -> bool:
        r = b * REC
        return not self.q[r + ACTIVE_DOWN] and now >= self.d[r + DOWN_UNTIL]

    def set_healthy(self, b: int, healthy: bool) -> None:
        self.q[b * REC + ACTIVE_DOWN] = 0 if healthy else 1

    def fold(self, slot: int) -> None:
        f, W1 = self.f, self.W1
        col = slot + 1
        for b, v in enumerate(f[col::W1].tolist()):
            if v:  # zero first: a racing reader undercounts for a moment (no spurious trip)
                i = b * W1
                f[i + col] = 0
                f[i] = f[i] + v

    def reset(self, b: int, rows: int) -> None:
        q, r = self.q, b * REC
        q[r + ACTIVE_DOWN] = 0
        self.d[r + DOWN_UNTIL] = 0.0
        total = self.failures(b, rows)
        q[r + LAST_FAIL] = total
        q[r + BASE] = total

    def state(self, b: int, now: float, rows: int) -> dict:
        r = b * REC
        du = self.d[r + DOWN_UNTIL]
        return {
            "active_healthy": not self.q[r + ACTIVE_DOWN],
            "passive_down_for_s": max(0.0, du - now) if du > now else 0.0,
            "consecutive_failures": self.failures(b, rows) - self.q[r + BASE],
        }
