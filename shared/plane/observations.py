"""Observations for the metrics endpoint: duration histograms, request counts by entrypoint and method,
gateway-generated responses, retries, exporter counters, and each worker's open connections.

Layout (segment ``observations``, int64 words):

    counter rows   (max_workers + 1) rows; row 0 is ``retired`` (master only), row w + 1 belongs to worker
                   slot w (that worker only). A row is, in this order:
        durations   (max_routers + max_services) x HW: NB buckets (non-cumulative: bucket i counts durations
                    d with BOUNDS[i-1] < d <= BOUNDS[i], the last one d > BOUNDS[-1]) then the sum of
                    durations in microseconds. Routers first, then services.
        requests    MAX_ENTRYPOINTS x len(METHODS) x CLASSES: finished exchanges by entrypoint, method and
                    status class (1xx..5xx, err = no response).
        local       max_routers x len(LOCAL_CODES): responses the gateway wrote itself (a middleware's reply,
                    an error) by router and status code (the last column is "any other code").
        retries     max_routers: extra upstream attempts made by the retry middleware.
        misc        MISC words: MISC_NAMES below (access log lines written/dropped, spans exported/dropped).
    gauges         max_workers x GAUGES words: worker w's open client connections by entrypoint and protocol
                   (MAX_ENTRYPOINTS x len(PROTOCOLS)), rewritten by that worker about once a second.

Invariants (the same as ``counters``):
- Every word has one writer, so ``q[i] += 1`` (a load and one aligned 8-byte store) is safe.
- ``fold(slot)`` (master, after reaping a worker): each counter word is added into ``retired`` then zeroed, so
  sums never go backwards; the dead worker's gauges are zeroed (a dead worker holds no connections). The plane
  brackets it with the header FOLD_SEQ seqlock, which ``Plane.observation_totals`` reads under.
- Entrypoint indices are positions in the sorted list of entrypoint names (``entrypoint_indices``); entrypoints
  cannot change without a restart, so master and workers agree on them. Names past MAX_ENTRYPOINTS - 1 share
  the last index.
- Router and service indices are the plane's slot indices (``Generations``), so a fresh slot is zeroed by
  ``reset_router`` / ``reset_service`` like the request counters.
"""

from __future__ import annotations

from bisect import bisect_left

from .layout import PlaneLayout
from .rows import RowTable
from .segments import Segment

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NB = len(BOUNDS) + 1          # + the overflow bucket (+Inf)
HW = NB + 1                   # + sum of durations in microseconds
SUM = NB
MAX_ENTRYPOINTS = 16
METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"CONNECT", b"TRACE")
METHOD_NAMES = tuple(m.decode() for m in METHODS) + ("OTHER",)
METHOD_INDEX = {m: i for i, m in enumerate(METHODS)}
OTHER_METHOD = len(METHODS)
NMETHODS = len(METHOD_NAMES)
CLASSES = 6
CLASS_NAMES = ("1xx", "2xx", "3xx", "4xx", "5xx", "err")
LOCAL_CODES = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)
LOCAL_INDEX = {c: i for i, c in enumerate(LOCAL_CODES)}
NLOCAL = len(LOCAL_CODES) + 1
MISC_NAMES = ("access_log_lines", "access_log_dropped", "spans_exported", "spans_dropped")
MISC = 8
PROTOCOLS = ("http1", "http2")
GAUGES = MAX_ENTRYPOINTS * len(PROTOCOLS)


def entrypoint_indices(names: object) -> dict[str, int]:
    """Entrypoint name -> index in the ``requests`` block (sorted order; the tail shares the last index)."""
    return {n: min(i, MAX_ENTRYPOINTS - 1) for i, n in enumerate(sorted(names))}  # type: ignore[call-overload]


class ObservationTable(RowTable):
    SEGMENT = "observations"

    @staticmethod
    def row_words(layout: PlaneLayout) -> int:
        return ((layout.max_routers + layout.max_services) * HW + MAX_ENTRYPOINTS * NMETHODS * CLASSES
                + layout.max_routers * NLOCAL + layout.max_routers + MISC)

    @classmethod
    def nbytes(cls, layout: PlaneLayout) -> int:
        return ((layout.max_workers + 1) * cls.row_words(layout) + layout.max_workers * GAUGES) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        self.layout = layout
        self.rw = rw = self.row_words(layout)
        nrows = (layout.max_workers + 1) * rw
        self.q = seg.view(0, nrows * 8, "q")
        self.g = seg.view(nrows * 8, layout.max_workers * GAUGES * 8, "q")
        self.svc_base = layout.max_routers * HW
        self.req_base = (layout.max_routers + layout.max_services) * HW
        self.local_base = self.req_base + MAX_ENTRYPOINTS * NMETHODS * CLASSES
        self.retry_base = self.local_base + layout.max_routers * NLOCAL
        self.misc_base = self.retry_base + layout.max_routers
        self.base = 0             # row base of the writer (set by ``bind``)
        self.slot = -1

    def bind(self, slot: int | None) -> None:
        """Make this attachment write to worker ``slot``'s row (None: the retired row, i.e. the master)."""
        self.slot = -1 if slot is None else slot
        self.base = (self.slot + 1) * self.rw

    # ---- writer hot path
    def observe(self, router: int, service: int, entrypoint: int, method: int, status: int, seconds: float,
                local: bool, retries: int) -> None:
        """One finished exchange: duration into the router's and service's histograms, one count by
        entrypoint/method/status class, and a count of a gateway-written response or of retries."""
        q, base = self.q, self.base
        b = bisect_left(BOUNDS, seconds)
        us = int(seconds * 1e6)
        if router >= 0:
            i = base + router * HW
            q[i + b] += 1
            q[i + SUM] += us
            if local:
                i = base + self.local_base + router * NLOCAL + LOCAL_INDEX.get(status, NLOCAL - 1)
                q[i] += 1
            if retries:
                i = base + self.retry_base + router
                q[i] += retries
        if service >= 0:
            i = base + self.svc_base + service * HW
            q[i + b] += 1
            q[i + SUM] += us
        cls = status // 100 - 1 if 100 <= status < 600 else 5
        i = base + self.req_base + (entrypoint * NMETHODS + method) * CLASSES + cls
        q[i] += 1

    def add_misc(self, which: int, n: int = 1) -> None:
        i = self.base + self.misc_base + which
        self.q[i] += n

    def set_connections(self, counts: list[int]) -> None:
        """This worker's open connections, ``counts[ep * len(PROTOCOLS) + proto]`` (GAUGES values)."""
        g, s = self.g, self.slot * GAUGES
        for j, v in enumerate(counts):
            if g[s + j] != v:
                g[s + j] = v

    # ---- master
    def fold(self, slot: int) -> None:
        self.fold_row(slot)
        g, s = self.g, slot * GAUGES
        for j in range(GAUGES):
            if g[s + j]:
                g[s + j] = 0

    def reset_router(self, idx: int, rows: int) -> None:
        self.zero(idx * HW, HW, rows)
        self.zero(self.local_base + idx * NLOCAL, NLOCAL, rows)
        self.zero(self.retry_base + idx, 1, rows)

    def reset_service(self, idx: int, rows: int) -> None:
        self.zero(self.svc_base + idx * HW, HW, rows)

    # ---- readers
    def split(self, flat: list[int], rows: int) -> dict:
        """{"router_durations"|"service_durations": {idx: (buckets list, sum seconds)},
        "requests": {(entrypoint idx, method name, class): n}, "local": {(router idx, code): n},
        "retries": {router idx: n}, "misc": {name: n}, "connections": {(slot, ep idx, protocol): n}}
        (non-zero entries only; a code of 0 in ``local`` means "another code")."""
        lay = self.layout
        out: dict = {}
        for key, base, n in (("router_durations", 0, lay.max_routers),
                             ("service_durations", self.svc_base, lay.max_services)):
            d = {}
            for i in range(n):
                vals = flat[base + i * HW : base + (i + 1) * HW]
                if any(vals):
                    d[i] = (vals[:NB], vals[SUM] / 1e6)
            out[key] = d
        req = {}
        rb = self.req_base
        for ep in range(MAX_ENTRYPOINTS):
            for m in range(NMETHODS):
                o = rb + (ep * NMETHODS + m) * CLASSES
                for c in range(CLASSES):
                    if flat[o + c]:
                        req[(ep, METHOD_NAMES[m], CLASS_NAMES[c])] = flat[o + c]
        out["requests"] = req
        local = {}
        codes = LOCAL_CODES + (0,)
        for r in range(lay.max_routers):
            o = self.local_base + r * NLOCAL
            vals = flat[o : o + NLOCAL]
            if any(vals):
                for j, v in enumerate(vals):
                    if v:
                        local[(r, codes[j])] = v
        out["local"] = local
        out["retries"] = {r: v for r, v in enumerate(flat[self.retry_base : self.retry_base + lay.max_routers])
                          if v}
        out["misc"] = dict(zip(MISC_NAMES, flat[self.misc_base : self.misc_base + len(MISC_NAMES)]))
        conns = {}
        g = self.g
        for slot in range(rows):
            vals = g[slot * GAUGES : (slot + 1) * GAUGES].tolist()
            for j, v in enumerate(vals):
                if v:
                    conns[(slot, j // len(PROTOCOLS), PROTOCOLS[j % len(PROTOCOLS)])] = v
        out["connections"] = conns
        return out
