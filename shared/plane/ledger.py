"""``Ledger``: what one finished exchange adds to this worker's rows of the counters and observations tables.

The hottest plane write (``Plane.account``, once per request), kept apart so that it compiles to a native class
(``ledger.pxd``): both tables are typed views there and every offset a C integer, so the dozen counter updates
of a request are memory stores instead of a dozen interpreted ``memoryview`` reads and writes. Every word it
writes belongs to this worker's row (one writer per word, see ``counters.py`` and ``observations.py``), so
plain loads and aligned stores are enough, compiled or not.
"""

from __future__ import annotations

from bisect import bisect_left

from .counters import BYTES_IN, BYTES_OUT, COLS, ERR, CounterTable
from .observations import BOUNDS, CLASSES, HW, LOCAL_INDEX, NLOCAL, SUM, ObservationTable


class Ledger:
    """The absolute word offsets of one worker's rows, computed once at attach."""

    def __init__(self, counters: CounterTable, slot: int, obs: ObservationTable) -> None:
        self.q = counters.q
        self.o = obs.q
        self.c_rt = counters.row_base(slot)
        self.c_svc = self.c_rt + counters.svc_base
        self.c_be = self.c_rt + counters.be_base
        self.o_rt = obs.base
        self.o_svc = obs.base + obs.svc_base
        self.o_req = obs.base + obs.req_base
        self.o_local = obs.base + obs.local_base
        self.o_retry = obs.base + obs.retry_base

    def account(self, router: int, service: int, backend: int, ep_method: int, status: int, bytes_in: int,
                bytes_out: int, seconds: float, local: bool, retries: int) -> None:
        """One finished exchange: status-class counts and bytes per router, service and backend (``counters``),
        duration histograms, the entrypoint/method/class count, gateway-written responses and retries
        (``observations``), for each index that is not -1. ``ep_method`` is ``entrypoint * NMETHODS + method``."""
        cls = status // 100 - 1 if 100 <= status < 600 else ERR
        b = bisect_left(BOUNDS, seconds)
        us = int(seconds * 1e6)
        if router >= 0:
            self._counts(self.c_rt + router * COLS, cls, bytes_in, bytes_out)
            self._duration(self.o_rt + router * HW, b, us)
            if local:
                code = LOCAL_INDEX.get(status, NLOCAL - 1)
                self.o[self.o_local + router * NLOCAL + code] += 1
            if retries:
                self.o[self.o_retry + router] += retries
        if service >= 0:
            self._counts(self.c_svc + service * COLS, cls, bytes_in, bytes_out)
            self._duration(self.o_svc + service * HW, b, us)
        if backend >= 0:
            self._counts(self.c_be + backend * COLS, cls, bytes_in, bytes_out)
        self.o[self.o_req + ep_method * CLASSES + cls] += 1

    def _counts(self, i: int, cls: int, bytes_in: int, bytes_out: int) -> None:
        """One request of status class ``cls`` and its bytes, in the counters row at word ``i``."""
        q = self.q
        q[i + cls] += 1
        if bytes_in:                     # most requests have no body: skip adding 0
            q[i + BYTES_IN] += bytes_in
        q[i + BYTES_OUT] += bytes_out

    def _duration(self, i: int, b: int, us: int) -> None:
        """One duration (histogram bucket ``b``, ``us`` microseconds) in the histogram at word ``i``."""
        o = self.o
        o[i + b] += 1
        o[i + SUM] += us

    def close(self) -> None:
        """Let go of both tables (``Plane.close``: a typed view holds an export of the segment's buffer)."""
        self.q = self.o = None
