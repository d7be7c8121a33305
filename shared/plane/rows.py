"""What the per-worker counter tables share (``counters``, ``observations``, ``middlewares``).

Each keeps ``max_workers + 1`` rows of ``rw`` int64 words in ``q``: row 0 is *retired* (what exited workers
counted, written by the master only), row ``slot + 1`` belongs to worker ``slot``, its single writer. A total is
the column sum over all rows, so a worker that exits loses nothing once its row is folded into row 0.
"""

from __future__ import annotations


class RowTable:
    q: memoryview      # (max_workers + 1) * rw int64 words
    rw: int            # words per row

    def fold_row(self, slot: int) -> None:
        """Master: add worker ``slot``'s row into the retired row, then zero it (retired first: a racing reader
        over-counts for a moment, never under-counts)."""
        q, rb = self.q, (slot + 1) * self.rw
        for j, v in enumerate(q[rb : rb + self.rw].tolist()):
            if v:
                q[j] = q[j] + v
                q[rb + j] = 0

    def zero(self, off: int, n: int, rows: int) -> None:
        """Master: zero words ``off .. off + n`` of the retired row and the first ``rows`` worker rows (an entity
        whose slot is reused by a new one starts from 0)."""
        q = self.q
        for r in range(rows + 1):
            base = r * self.rw + off
            for c in range(n):
                if q[base + c]:
                    q[base + c] = 0

    def sums(self, rows: int) -> list[int]:
        """Column sums over the retired row and the first ``rows`` worker rows: one flat list laid out like a row.
        Master only (metrics scrapes, the dashboard's sampler once a second), so numpy is imported here, never in
        a worker: summing the rows in C costs a tenth of a Python loop over tables thousands of words wide."""
        import numpy as np

        table = np.frombuffer(self.q, dtype=np.int64, count=(rows + 1) * self.rw).reshape(rows + 1, self.rw)
        return table.sum(axis=0).tolist()
