"""The seqlock bucket table under the plane's hashed tables: rate-limit entries, sticky bindings, token windows.

A table is ``entries`` records of ``REC`` int64/float64 words (one ``q`` and one ``d`` view over the same
bytes), grouped in buckets of BUCKET records; bucket *b* is fcntl lock stripe ``lock_base + b``. The first two
words of every record mean the same in every table:

    0 SEQ  int64  seqlock: odd while a lock holder rewrites the record
    1 FP   int64  keyed 64-bit fingerprint of the record's key; 0 = empty

Invariants:
- a key lives only in the bucket its fingerprint picks (``_bucket``), so a lookup reads at most BUCKET FPs;
- a record is rewritten only by ``_install``: under the bucket's lock, between SEQ turning odd and SEQ turning
  even again, so lock-free readers (``_lookup``: the FP, then the payload between two equal even SEQ loads)
  never take a half-written record for a whole one, and the hot path never takes a lock;
- a rewriter that died leaves SEQ odd; readers give up on it after SPIN tries (never hang), and the next lock
  holder of the bucket reuses that record first;
- a full bucket evicts, in this order: a record left odd, an empty one, one whose RANK word is at or below
  ``expired_at``, else the one with the lowest RANK (the LRU time or the expiry; RANK values are monotonic
  seconds, never below 0). Memory is fixed whatever the number of keys; an evicted key starts afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .hashing import Fingerprinter
from .layout import BUCKET
from .locks import RangeLocks
from .segments import Segment

SEQ, FP = 0, 1
SPIN = 64
_DEAD_WRITER, _EMPTY, _EXPIRED = -3.0, -2.0, -1.0   # eviction scores below every RANK
T = TypeVar("T")


class BucketTable:
    """Base of a hashed plane table; a subclass sets ``REC`` (words per record), ``RANK`` (the eviction word)
    and ``PAYLOAD``: the two (view, word) pairs ``_lookup`` reads for a lock-free reader."""

    REC: int
    RANK: int
    PAYLOAD: tuple[tuple[str, int], ...] = ()

    def __init__(self, seg: Segment, offset: int, entries: int, locks: RangeLocks | None, lock_base: int,
                 secret: bytes) -> None:
        self.E = entries
        self.nbuckets = entries // BUCKET
        self.q = seg.view(offset, entries * self.REC * 8, "q")
        self.d = seg.view(offset, entries * self.REC * 8, "d")
        self.locks = locks
        self.lock_base = lock_base
        self._fp = Fingerprinter(secret).fp
        self._payload = tuple((self.q if view == "q" else self.d, word) for view, word in self.PAYLOAD)

    def _bucket(self, fp: int) -> int:
        """The first record of the bucket ``fp`` lives in."""
        return (fp >> 16) % self.nbuckets * BUCKET

    def _find(self, fp: int, b0: int) -> int:
        """The record holding ``fp`` in bucket ``b0`` (lock-free, SEQ not checked: ``_lookup`` does), or -1."""
        rec = self.REC
        r0 = b0 * rec
        try:
            return b0 + self.q[r0 + FP: r0 + BUCKET * rec: rec].tolist().index(fp)
        except ValueError:
            return -1

    def _lookup(self, fp: int, b0: int) -> tuple[int, int, int | float, int | float] | None:
        """(record, SEQ, the two PAYLOAD words) of ``fp`` in bucket ``b0``, read lock-free between two equal,
        even SEQ loads; None if no record holds it, or a writer keeps it odd for SPIN tries (one that died)."""
        e = self._find(fp, b0)
        if e < 0:
            return None
        q = self.q
        (va, wa), (vb, wb) = self._payload
        r = e * self.REC
        wa += r
        wb += r
        for _ in range(SPIN):
            s1 = q[r]
            if s1 & 1:
                continue
            if q[r + FP] != fp:
                return None
            a = va[wa]
            b = vb[wb]
            if q[r] == s1:
                return e, s1, a, b
        return None

    def _install(self, fp: int, b0: int, fill: Callable[[int], T | None], keep: Callable[[int], T | None] | None = None,
                 expired_at: float = float("-inf")) -> tuple[int, T | None]:
        """Under the bucket's lock: give ``fp`` a record and return (record, value). A record that already holds
        ``fp`` stays as it is if ``keep`` (given its word offset) returns a value other than None; otherwise
        that record, or the first by the eviction order, gets FP = ``fp`` and is rewritten by ``fill`` (given
        its word offset, returning the value) inside the seqlock. Only here are records rewritten."""
        q, d, rec, rank = self.q, self.d, self.REC, self.RANK
        k = self.lock_base + b0 // BUCKET
        self.locks.acquire(k)
        try:
            victim, best = -1, None
            for e in range(b0, b0 + BUCKET):
                r = e * rec
                seq, efp = q[r], q[r + FP]
                if seq & 1:
                    score = _DEAD_WRITER
                elif efp == fp:
                    got = None if keep is None else keep(r)
                    if got is not None:
                        return e, got
                    victim = e
                    break
                elif efp == 0:
                    score = _EMPTY
                else:
                    score = d[r + rank]
                    if score <= expired_at:
                        score = _EXPIRED
                if best is None or score < best:
                    victim, best = e, score
            r = victim * rec
            seq = q[r]
            q[r] = seq + 1 if not seq & 1 else seq
            q[r + FP] = fp
            value = fill(r)
            q[r] = (seq | 1) + 1
            return victim, value
        finally:
            self.locks.release(k)
