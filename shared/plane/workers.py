"""Per-worker rows: who runs in each worker slot, and whether it is alive.

Layout (segment ``workers``): ``max_workers`` rows of ``ROW`` int64 words:

    0  PID          master      pid of the worker in this slot, 0 when the slot is empty
    1  HEARTBEAT    worker      time.monotonic_ns() of the worker's last ``heartbeat()``
    2  GENERATION   worker      config generation the worker currently serves
    3  STARTS       master      how many times the slot was given a pid (restarts = STARTS - 1)
    4  STARTED_NS   master      monotonic ns when the master set the pid
    5..7            reserved

Each word has exactly one writer (column 2 above), so plain aligned stores suffice. CLOCK_MONOTONIC is
system-wide on Linux, so the master can compare a worker's heartbeat with its own clock.
"""

from __future__ import annotations

import time

from .layout import PlaneLayout
from .segments import Segment

ROW = 8
PID, HEARTBEAT, GENERATION, STARTS, STARTED_NS = range(5)


class WorkerTable:
    SEGMENT = "workers"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.max_workers * ROW * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        self.n = layout.max_workers
        self.q = seg.view(0, self.nbytes(layout), "q")

    # master
    def set_worker(self, slot: int, pid: int, now_ns: int | None = None) -> None:
        q, b = self.q, slot * ROW
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        q[b + HEARTBEAT] = now_ns
        q[b + STARTED_NS] = now_ns
        q[b + GENERATION] = 0
        q[b + STARTS] = q[b + STARTS] + 1
        q[b + PID] = pid

    def clear(self, slot: int) -> None:
        q, b = self.q, slot * ROW
        q[b + PID] = 0
        q[b + HEARTBEAT] = 0

    # worker
    def heartbeat(self, slot: int, now_ns: int) -> None:
        self.q[slot * ROW + HEARTBEAT] = now_ns

    def report_generation(self, slot: int, generation: int) -> None:
        self.q[slot * ROW + GENERATION] = generation

    # anyone
    def pid(self, slot: int) -> int:
        return self.q[slot * ROW + PID]

    def last_heartbeat(self, slot: int) -> int:
        return self.q[slot * ROW + HEARTBEAT]

    def generation(self, slot: int) -> int:
        return self.q[slot * ROW + GENERATION]

    def rows(self, now_ns: int) -> list[dict]:
        out = []
        q = self.q
        for slot in range(self.n):
            b = slot * ROW
            pid = q[b + PID]
            if not pid:
                continue
            hb = q[b + HEARTBEAT]
            out.append(
                {
                    "slot": slot,
                    "pid": pid,
                    "heartbeat_age_s": (now_ns - hb) / 1e9 if hb else None,
                    "generation": q[b + GENERATION],
                    "restarts": max(0, q[b + STARTS] - 1),
                }
            )
        return out
