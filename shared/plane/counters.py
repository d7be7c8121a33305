"""Request counters and in-flight counts: per-worker single-writer rows, summed by readers.

Layout (segment ``counters``, int64 words):

    counter rows   (max_workers + 1) rows; row 0 is ``retired`` (written by the master only), row w + 1
                   belongs to worker slot w (written by that worker only). A row is
                   [routers x COLS][services x COLS][backends x COLS], and an entity's COLS words are
                       0..4  responses by status class 1xx..5xx
                       5     ERR: no response status (connect error, timeout before headers; status 0)
                       6     bytes in (request bytes from the client; TCP/UDP: bytes relayed from it)
                       7     bytes out (response bytes to the client; TCP/UDP: bytes relayed to it)
                       8     TCP connections and UDP sessions relayed (ended, with a backend reached)
                       9     TCP connections and UDP sessions that reached no backend (no route, none
                             healthy, connect failed or timed out)
                      10     milliseconds the relayed connections and sessions lasted, summed
    in-flight      max_backends x max_workers words: backend b, worker w at b * max_workers + w,
                   written only by worker w (inc before proxying, dec when done).

Invariants:
- Every word has exactly one writer, so ``x += 1`` (a load and an aligned 8-byte store) is safe; there is
  no atomic read-modify-write in Python and none is needed.
- Readers sum columns over rows [0, 1 + ROWS) (header ROWS = highest worker slot ever used + 1), so reads
  are O(live workers), never O(max_workers).
- ``fold(slot)`` runs in the master after it reaped a dead worker: per word, add the dead row's value into
  ``retired`` *then* zero the word, and drop (zero) the dead worker's in-flight words. Summed counters
  therefore stay monotonic across worker deaths; the master brackets the fold with the header FOLD_SEQ
  seqlock so ``totals()`` never sees a word counted twice or not at all.
"""

from __future__ import annotations

from .layout import PlaneLayout
from .rows import RowTable
from .segments import Segment

COLS = 11
ERR, BYTES_IN, BYTES_OUT, CONNECTIONS, CONNECTION_FAILURES, CONNECTION_MS = 5, 6, 7, 8, 9, 10
COL_NAMES = ("1xx", "2xx", "3xx", "4xx", "5xx", "err", "bytes_in", "bytes_out", "connections",
             "connection_failures", "connection_ms")


def status_col(status: int) -> int:
    return status // 100 - 1 if 100 <= status < 600 else ERR


class CounterTable(RowTable):
    SEGMENT = "counters"

    @staticmethod
    def row_words(layout: PlaneLayout) -> int:
        return (layout.max_routers + layout.max_services + layout.max_backends) * COLS

    @classmethod
    def nbytes(cls, layout: PlaneLayout) -> int:
        return ((layout.max_workers + 1) * cls.row_words(layout) + layout.max_backends * layout.max_workers) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        self.layout = layout
        self.rw = self.row_words(layout)
        self.W = layout.max_workers
        nrows = (layout.max_workers + 1) * self.rw
        self.q = seg.view(0, nrows * 8, "q")
        self.inf = seg.view(nrows * 8, layout.max_backends * layout.max_workers * 8, "q")
        self.svc_base = layout.max_routers * COLS
        self.be_base = (layout.max_routers + layout.max_services) * COLS

    def row_base(self, slot: int) -> int:
        return (slot + 1) * self.rw

    # ---- in-flight ----
    def inflight(self, b: int, rows: int) -> int:
        s = b * self.W
        return sum(self.inf[s : s + rows])

    # ---- master ----
    def fold(self, slot: int) -> None:
        self.fold_row(slot)
        inf, W = self.inf, self.W
        for b, v in enumerate(inf[slot::W].tolist()):
            if v:
                inf[b * W + slot] = 0

    def reset_router(self, idx: int, rows: int) -> None:
        self.zero(idx * COLS, COLS, rows)

    def reset_service(self, idx: int, rows: int) -> None:
        self.zero(self.svc_base + idx * COLS, COLS, rows)

    def reset_backend(self, idx: int, rows: int) -> None:
        self.zero(self.be_base + idx * COLS, COLS, rows)
        s = idx * self.W
        for w in range(self.W):
            if self.inf[s + w]:
                self.inf[s + w] = 0

    # ---- readers ----
    def split(self, flat: list[int]) -> dict:
        lay = self.layout
        out: dict = {}
        for kind, base, n in (
            ("routers", 0, lay.max_routers),
            ("services", self.svc_base, lay.max_services),
            ("backends", self.be_base, lay.max_backends),
        ):
            d = {}
            for i in range(n):
                vals = flat[base + i * COLS : base + (i + 1) * COLS]
                if any(vals):
                    d[i] = dict(zip(COL_NAMES, vals))
            out[kind] = d
        return out
