"""Backend health: the active-check flag (master) and outlier detection's streaks and ejections (workers, master).

Layout (segment ``health``):

    records    max_backends x REC words:
                   0 ACTIVE_DOWN  int64  written only by whoever runs active checks (the master): 1 = failing
                   1 DOWN_UNTIL   float  monotonic seconds until which the backend is ejected (out of traffic)
                   2 BASE         int64  failure total at the last reset of the 5xx streak (success or trip)
                   3 LAST_FAIL    int64  failure total right after the latest failure
                   4 GW_BASE      int64  the same two for the gateway-failure streak (502, 503, 504, no answer)
                   5 GW_LAST      int64
                   6 MULTIPLIER   int64  times ejected, less one per ``interval`` spent un-ejected (Envoy's)
                   7 EJECTED_FOR  float  length of the latest ejection, seconds
                   8 .. 8 + len(REASONS)  ejections by reason, cumulative
    failures   max_backends x (max_workers + 1) int64: backend b, column 0 = retired (master),
               column w + 1 = cumulative failures seen by worker w (single writer).
    gateway    the same for gateway failures.

Zero everywhere means "healthy, no failures", so a fresh or reset slot is usable at once.

Streaks without locks: the consecutive-failure count is ``sum(failures[b]) - BASE``. A failure bumps the
worker's own column, sums the row and stores LAST_FAIL; a success stores BASE = LAST_FAIL (two loads and
usually no store). BASE and LAST_FAIL are single words that several workers may store; each store is a whole,
recent value, and a lost race only shifts the count by the failures that raced it. A streak that reaches its
threshold is restarted (BASE = the sum) whether or not the ejection is allowed, so a backend that cannot be
ejected costs a lock only once per ``threshold`` failures.

Ejections (DOWN_UNTIL, MULTIPLIER, EJECTED_FOR, the reason counts) are written only under the service's lock
(``Plane.outlier_eject``, ``Plane.outlier_decay``), by a worker or by the master's success-rate sweep, so the
counts are exact and ``max_ejection_percent`` holds across workers; readers need no lock. The one write
outside the lock is ``hold_down`` (an AI provider's ``Retry-After``): it only moves DOWN_UNTIL later, so a racing
ejection at worst ends at the later of the two times.
"""

from __future__ import annotations

from collections.abc import Sequence

from .layout import PlaneLayout
from .segments import Segment

REASONS = ("consecutive_5xx", "consecutive_gateway_failure", "success_rate", "passive_health")
"""Why a backend was ejected: ``passive_health`` is the fixed-cooldown behaviour of the ``passive_health`` keys."""
ACTIVE_DOWN, DOWN_UNTIL, BASE, LAST_FAIL, GW_BASE, GW_LAST, MULTIPLIER, EJECTED_FOR, EJECTIONS = range(9)
REC = EJECTIONS + len(REASONS)


class HealthTable:
    SEGMENT = "health"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.max_backends * (REC + 2 * (layout.max_workers + 1)) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        n = layout.max_backends * REC * 8
        self.q = seg.view(0, n, "q")
        self.d = seg.view(0, n, "d")
        self.W1 = layout.max_workers + 1
        m = layout.max_backends * self.W1 * 8
        self.f = seg.view(n, m, "q")
        self.g = seg.view(n + m, m, "q")

    def failures(self, b: int, rows: int) -> int:
        s = b * self.W1
        return sum(self.f[s : s + 1 + rows])

    def gateway_failures(self, b: int, rows: int) -> int:
        s = b * self.W1
        return sum(self.g[s : s + 1 + rows])

    def count_failure(self, b: int, col: int, rows: int, gateway: bool) -> tuple[int, int]:
        """One failure seen by column ``col``: the (5xx, gateway) streaks it leaves. A failure that is not a
        gateway failure (a plain 500) ends the gateway streak."""
        q, r, s = self.q, b * REC, b * self.W1
        f = self.f
        f[s + col] = f[s + col] + 1
        total = sum(f[s : s + 1 + rows])
        q[r + LAST_FAIL] = total
        if not gateway:
            last = q[r + GW_LAST]
            if q[r + GW_BASE] != last:
                q[r + GW_BASE] = last
            return total - q[r + BASE], 0
        g = self.g
        g[s + col] = g[s + col] + 1
        gw = sum(g[s : s + 1 + rows])
        q[r + GW_LAST] = gw
        return total - q[r + BASE], gw - q[r + GW_BASE]

    def restart_streaks(self, b: int) -> None:
        """Both streaks start again from zero (after a trip, allowed or not)."""
        q, r = self.q, b * REC
        q[r + BASE] = q[r + LAST_FAIL]
        q[r + GW_BASE] = q[r + GW_LAST]

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

    def is_ejected(self, b: int, now: float) -> bool:
        return now < self.d[b * REC + DOWN_UNTIL]

    def set_healthy(self, b: int, healthy: bool) -> None:
        self.q[b * REC + ACTIVE_DOWN] = 0 if healthy else 1

    # ---- under the service's lock
    def eject(self, b: int, peers: Sequence[int], now: float, reason: int, limit: int, base: float,
              cap: float, jitter: float) -> bool:
        """Eject ``b`` unless it is ejected already or ``limit`` of ``peers`` (its service's backends) are: for
        ``base`` times its multiplier, at most ``cap``, plus ``jitter`` seconds."""
        q, d, r = self.q, self.d, b * REC
        if now < d[r + DOWN_UNTIL] or sum(1 for p in peers if now < d[p * REC + DOWN_UNTIL]) >= limit:
            return False
        n = q[r + MULTIPLIER] = q[r + MULTIPLIER] + 1
        length = min(base * n, max(base, cap)) + jitter
        d[r + EJECTED_FOR] = length
        d[r + DOWN_UNTIL] = now + length
        q[r + EJECTIONS + reason] += 1
        return True

    def decay(self, b: int, now: float, interval: float) -> None:
        """One less multiplier for a backend un-ejected for at least ``interval``."""
        q, r = self.q, b * REC
        if q[r + MULTIPLIER] > 0 and now - self.d[r + DOWN_UNTIL] >= interval:
            q[r + MULTIPLIER] -= 1

    # ---- master
    def fold(self, slot: int) -> None:
        W1 = self.W1
        col = slot + 1
        for m in (self.f, self.g):
            for b, v in enumerate(m[col::W1].tolist()):
                if v:  # zero first: a racing reader undercounts for a moment (no spurious trip)
                    i = b * W1
                    m[i + col] = 0
                    m[i] = m[i] + v

    def reset(self, b: int, rows: int) -> None:
        q, r = self.q, b * REC
        for j in range(REC):
            q[r + j] = 0
        q[r + LAST_FAIL] = q[r + BASE] = self.failures(b, rows)
        q[r + GW_LAST] = q[r + GW_BASE] = self.gateway_failures(b, rows)

    # ---- readers
    def state(self, b: int, now: float, rows: int) -> dict:
        q, d, r = self.q, self.d, b * REC
        du = d[r + DOWN_UNTIL]
        return {
            "active_healthy": not q[r + ACTIVE_DOWN],
            "passive_down_for_s": max(0.0, du - now) if du > now else 0.0,
            "consecutive_failures": self.failures(b, rows) - q[r + BASE],
            "consecutive_gateway_failures": self.gateway_failures(b, rows) - q[r + GW_BASE],
            "ejection_multiplier": q[r + MULTIPLIER],
            "last_ejection_s": d[r + EJECTED_FOR],
            "ejections": dict(zip(REASONS, q[r + EJECTIONS : r + REC].tolist(), strict=True)),
        }
