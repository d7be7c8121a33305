"""Per-middleware counters: which middleware answered a request itself (by status code), and middleware
events worth a metric (``rate-limit-redis`` fail-opens).

Layout (segment ``middlewares``, int64 words):

    counter rows   (max_workers + 1) rows; row 0 is ``retired`` (written by the master only), row w + 1
                   belongs to worker slot w (written by that worker only). A row is max_middlewares x MC
                   words; middleware m's MC words are
                       0 .. len(CODES) - 1   replies with that status code (``CODES``)
                       OTHER                 replies with any other status code
                       FAIL_OPEN             requests let through because the middleware's store was down
                                             (``rate-limit-redis``)
                       ATTEMPTS ..           ``ai-fallback`` attempts: MAX_TARGETS x len(ATTEMPT_OUTCOMES)
                                             words, target t's outcome o at ATTEMPTS + t * len + o

Middleware indices come from the master's ``SlotAllocator`` keyed by middleware *name*
(``master/generations.py``), so label values are bounded by the config and a middleware keeps its counts
across reloads that change its parameters; a fresh index is zeroed (``reset``) before a generation uses it.

Invariants (the same as ``counters``): one writer per word, so ``q[i] += 1`` is safe; ``fold(slot)`` adds a
dead worker's row into ``retired`` then zeroes it, under the plane's FOLD_SEQ seqlock, so sums never go back.
"""

from __future__ import annotations

from ..vocabulary import ATTEMPT_OUTCOMES
from .layout import PlaneLayout
from .rows import RowTable
from .segments import Segment

CODES = (200, 204, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 413, 429, 500, 502, 503, 504)
CODE_INDEX = {c: i for i, c in enumerate(CODES)}
OTHER = len(CODES)
FAIL_OPEN = OTHER + 1
ATTEMPTS = FAIL_OPEN + 1
MAX_TARGETS = 8
MC = ATTEMPTS + MAX_TARGETS * len(ATTEMPT_OUTCOMES)


class MiddlewareTable(RowTable):
    SEGMENT = "middlewares"

    @staticmethod
    def row_words(layout: PlaneLayout) -> int:
        return layout.max_middlewares * MC

    @classmethod
    def nbytes(cls, layout: PlaneLayout) -> int:
        return (layout.max_workers + 1) * cls.row_words(layout) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        self.layout = layout
        self.rw = self.row_words(layout)
        self.q = seg.view(0, (layout.max_workers + 1) * self.rw * 8, "q")
        self.base = 0

    def bind(self, slot: int | None) -> None:
        """Write to worker ``slot``'s row (None: the retired row, i.e. the master)."""
        self.base = (0 if slot is None else slot + 1) * self.rw

    # ---- writer
    def answered(self, mw: int, status: int) -> None:
        """Middleware ``mw`` answered a request itself with ``status``."""
        i = self.base + mw * MC + CODE_INDEX.get(status, OTHER)
        self.q[i] += 1

    def fail_open(self, mw: int) -> None:
        i = self.base + mw * MC + FAIL_OPEN
        self.q[i] += 1

    def attempt(self, mw: int, target: int, outcome: int) -> None:
        """One attempt of ``ai-fallback`` ``mw`` on its target ``target`` ended with ``ATTEMPT_OUTCOMES[outcome]``."""
        i = self.base + mw * MC + ATTEMPTS + target * len(ATTEMPT_OUTCOMES) + outcome
        self.q[i] += 1

    # ---- master
    def fold(self, slot: int) -> None:
        self.fold_row(slot)

    def reset(self, mw: int, rows: int) -> None:
        self.zero(mw * MC, MC, rows)

    # ---- readers

    @staticmethod
    def split(flat: list[int]) -> dict:
        """{"answers": {(middleware idx, code or 0 for another code): n}, "fail_open": {middleware idx: n},
        "attempts": {(middleware idx, target, outcome name): n}} (non-zero entries only)."""
        answers, fail_open, attempts = {}, {}, {}
        no = len(ATTEMPT_OUTCOMES)
        codes = CODES + (0,)
        for m in range(len(flat) // MC):
            vals = flat[m * MC : (m + 1) * MC]
            if not any(vals):
                continue
            for j in range(OTHER + 1):
                if vals[j]:
                    answers[(m, codes[j])] = vals[j]
            if vals[FAIL_OPEN]:
                fail_open[m] = vals[FAIL_OPEN]
            for j in range(ATTEMPTS, MC):
                if vals[j]:
                    attempts[(m, (j - ATTEMPTS) // no, ATTEMPT_OUTCOMES[(j - ATTEMPTS) % no])] = vals[j]
        return {"answers": answers, "fail_open": fail_open, "attempts": attempts}
