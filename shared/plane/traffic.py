"""Node-wide traffic-management state: the mirroring counters, failover activations and the retry budget's active
retries.

Layout (segment ``traffic``, int64 words):

    records   max_services x REC words, service s's record written only under fcntl lock ``base + s``:
                  0 TOTAL        requests through mirroring service s (Traefik's ``total``)
                  1 EXHAUSTED    retries of service s refused by the retry budget
                  2 ACTIVATIONS  times failover service s switched from its primary to its fallback (per worker)
                  3 .. 3 + M     COUNT_i: requests chosen for mirror i (Traefik's ``count_i``)
                  then M x len(OUTCOMES) words: what became of mirror i's requests, by outcome
    retries   max_workers x max_services words: retries in flight that worker w started on service s
              (single writer, the worker; dropped when it dies, so a killed worker leaks no budget)

Invariants: mirror i is chosen for a request exactly when ``COUNT_i * 100 < TOTAL * percent_i`` after ``TOTAL``
counted it, read and written under the service's lock, so the selection is Traefik's deterministic one across
every worker (20 % of 1000 requests is exactly 200, whichever workers served them). A holder killed inside the
lock leaves at most one request miscounted; nothing else depends on the record's words agreeing.
"""

from __future__ import annotations

from .layout import PlaneLayout
from .locks import RangeLocks
from .segments import Segment

MAX_MIRRORS = 8
OUTCOMES = ("sent", "failed", "timeout", "dropped", "too_large")
"""``sent``: the mirror answered (its response discarded); ``failed``: no answer (connect error, reset, none
healthy); ``timeout``: no answer within the mirroring timeout; ``dropped``: the worker had its limit of mirrored
requests in flight; ``too_large``: the body was over ``max_body_bytes``, so the request was not mirrored."""
OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
TOTAL, EXHAUSTED, ACTIVATIONS, COUNT = 0, 1, 2, 3
OUT = COUNT + MAX_MIRRORS
REC = OUT + MAX_MIRRORS * len(OUTCOMES)


class TrafficTable:
    SEGMENT = "traffic"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.max_services * (REC + layout.max_workers) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout, locks: RangeLocks | None, base: int) -> None:
        self.S = layout.max_services
        self.W = layout.max_workers
        self.q = seg.view(0, self.S * REC * 8, "q")
        self.active = seg.view(self.S * REC * 8, self.W * self.S * 8, "q")
        self.locks = locks
        self.base = base

    # ---- workers
    def mirror_select(self, s: int, percents: tuple[int, ...]) -> list[int]:
        """Count one request through mirroring service ``s``: the indices of the mirrors it goes to."""
        q, r = self.q, s * REC
        locks, k = self.locks, self.base + s
        locks.acquire(k)  # type: ignore[union-attr]
        try:
            total = q[r + TOTAL] = q[r + TOTAL] + 1
            chosen = []
            for i, percent in enumerate(percents):
                if q[r + COUNT + i] * 100 < total * percent:
                    q[r + COUNT + i] += 1
                    chosen.append(i)
            return chosen
        finally:
            locks.release(k)  # type: ignore[union-attr]

    def add(self, s: int, word: int) -> None:
        """One more in word ``word`` of service ``s``'s record (an outcome, EXHAUSTED or ACTIVATIONS)."""
        k = self.base + s
        self.locks.acquire(k)  # type: ignore[union-attr]
        try:
            self.q[s * REC + word] += 1
        finally:
            self.locks.release(k)  # type: ignore[union-attr]

    def retry_active(self, s: int, rows: int) -> int:
        """Retries in flight on service ``s``, node-wide (summed over the first ``rows`` workers)."""
        return sum(self.active[s : rows * self.S : self.S])

    def retry_change(self, slot: int, s: int, n: int) -> None:
        self.active[slot * self.S + s] += n

    # ---- master
    def fold(self, slot: int) -> None:
        lo = slot * self.S
        for s, v in enumerate(self.active[lo : lo + self.S].tolist()):
            if v:
                self.active[lo + s] = 0

    def reset(self, s: int) -> None:
        """A service slot given to a new service starts from zero (a reload that keeps it keeps its counts)."""
        r = s * REC
        for j in range(REC):
            if self.q[r + j]:
                self.q[r + j] = 0

    # ---- readers
    def split(self) -> dict[int, dict]:
        """{service idx: {"total", "retry_budget_exhausted", "failover_activations", "mirrors": {i: {"chosen",
        *OUTCOMES}}}}, non-zero
        records only."""
        out = {}
        for s in range(self.S):
            rec = self.q[s * REC : (s + 1) * REC].tolist()
            if not any(rec):
                continue
            mirrors = {}
            for i in range(MAX_MIRRORS):
                outs = rec[OUT + i * len(OUTCOMES) : OUT + (i + 1) * len(OUTCOMES)]
                if rec[COUNT + i] or any(outs):
                    mirrors[i] = {"chosen": rec[COUNT + i], **dict(zip(OUTCOMES, outs, strict=True))}
            out[s] = {"total": rec[TOTAL], "retry_budget_exhausted": rec[EXHAUSTED],
                      "failover_activations": rec[ACTIVATIONS], "mirrors": mirrors}
        return out


def outcome_word(mirror: int, outcome: str) -> int:
    return OUT + mirror * len(OUTCOMES) + OUTCOME_INDEX[outcome]
