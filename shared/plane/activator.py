"""Node-wide state of the serving activator: requests waiting for an instance of a revision, and how long they
waited.

Layout (segment ``activator``, int64 words): max_workers x max_services records of REC words, record (w, s)
written only by worker w about revision service s (the revision's load balancer slot):

    0 QUEUED     requests this worker holds waiting for an instance (a gauge)
    1 FULL       requests refused because the node-wide queue was full
    2 TIMEOUT    requests that waited ``queue_timeout`` without an instance
    3 .. 3 + NB  queue waits of the requests that got an instance (the observations' BOUNDS, non-cumulative)
    3 + NB       the sum of those waits, microseconds

Invariants: one writer per word, so ``q[i] += 1`` is safe without a lock. ``fold(slot)`` (a dead worker) zeroes
only the QUEUED gauges: a dead worker holds no waiter, and its counters stay so sums never go backwards.
"""

from __future__ import annotations

from bisect import bisect_left

from .layout import PlaneLayout
from .observations import BOUNDS, NB
from .segments import Segment

QUEUED, FULL, TIMEOUT, WAITS = 0, 1, 2, 3
SUM = WAITS + NB
REC = SUM + 1


class ActivatorTable:
    SEGMENT = "activator"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.max_workers * layout.max_services * REC * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        self.S = layout.max_services
        self.q = seg.view(0, self.nbytes(layout), "q")

    # ---- workers
    def add(self, slot: int, s: int, word: int, n: int) -> None:
        i = (slot * self.S + s) * REC + word
        self.q[i] += n

    def waited(self, slot: int, s: int, seconds: float) -> None:
        base = (slot * self.S + s) * REC
        q = self.q
        q[base + WAITS + bisect_left(BOUNDS, seconds)] += 1
        q[base + SUM] += int(seconds * 1e6)

    # ---- readers
    def queued(self, s: int, rows: int) -> int:
        """Requests waiting for an instance of revision ``s``, node-wide."""
        return sum(self.q[(w * self.S + s) * REC + QUEUED] for w in range(rows))

    def totals(self, s: int, rows: int) -> dict:
        """{"queued", "full", "timeout", "waits": [NB buckets], "wait_sum_us"} of revision ``s``, node-wide."""
        out = [0] * REC
        for w in range(rows):
            base = (w * self.S + s) * REC
            for i, v in enumerate(self.q[base : base + REC].tolist()):
                out[i] += v
        return {"queued": out[QUEUED], "full": out[FULL], "timeout": out[TIMEOUT],
                "waits": out[WAITS:SUM], "wait_sum_us": out[SUM]}

    # ---- master
    def fold(self, slot: int) -> None:
        for s in range(self.S):
            i = (slot * self.S + s) * REC + QUEUED
            if self.q[i]:
                self.q[i] = 0

    def reset(self, s: int, rows: int) -> None:
        """A service slot given to a new service starts from zero."""
        for w in range(rows):
            base = (w * self.S + s) * REC
            for j in range(REC):
                if self.q[base + j]:
                    self.q[base + j] = 0
