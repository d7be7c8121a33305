"""Node-wide token-bucket rate limiting in a fixed-size hashed table, lock-free on the hot path.

Layout (segment ``ratelimit``):

    generations  max_limiters int64, written by the master: ``reset_limiter(l)`` bumps gen[l], which
                 changes every fingerprint of limiter l (its old entries become unreachable and age out)
    entries      ratelimit_entries x REC words, grouped in buckets of BUCKET (= one fcntl lock stripe):
                     0 SEQ     int64  seqlock: odd while a lock holder rewrites the entry
                     1 FP      int64  keyed 64-bit fingerprint of (limiter, generation, key); 0 = empty
                     2 RATE    float  tokens per second the entry was anchored with
                     3 ANCHOR  float  see below
                     4 LAST    float  monotonic seconds of the last take (LRU for eviction)
                     5         reserved
    counts       ratelimit_entries x (max_workers + 1) int64: entry e, column 0 = retired (master),
                 column w + 1 = cumulative admissions by worker w (single writer, never reset).

The bucket, without a shared read-modify-write:
    C      = sum of the entry's counts                    (admissions since the entry slot was created)
    tokens = burst + rate * now + ANCHOR - C              (a token bucket whose refill is rate * now)
The cap ("a bucket holds at most ``burst``") is applied by re-anchoring: when ``tokens > burst`` the taker
treats it as ``burst``, bumps its own count and stores ANCHOR = C - rate * now, with C the sum it read (a full
bucket at ``now`` minus its token; claims others made since that read are subtracted on top). That is one
aligned 8-byte store, and it is made only if it *lowers* ANCHOR: a re-anchor removes surplus tokens, so a stale
one (a taker preempted between its read and its store) or one racing another taker can only make the bucket
stricter, never refill it. Re-anchoring happens only when the bucket is full, i.e. never during a flood.

Admission needs no verify while the bucket holds at least one token per worker row (each worker has at most
one take in progress, so all of them together cannot drive it negative). Below that it is claim-then-verify: a
taker that sees ``tokens >= 1`` bumps its own count, re-sums, and if the bucket went negative (another worker
took the same last token at the same moment) it undoes its bump and rejects. Two racers can both back off (the
token stays for the next request); both admitting needs each increment to be invisible to the other's re-read,
which only the CPU store buffer can cause, for nanoseconds. Measured with 4 processes hammering one key
(``tests/unit/test_plane_stress.py``), admissions stay within ±5% of ``burst + rate * t`` (the issue's 1,050
for 10 s at rate 100, burst 50).

Why no lock: an fcntl stripe lock per request would cost two syscalls, measured at ~1.3 µs per
lock/unlock pair (``loadtest/plane_bench.py``; a lock-free take is ~1.6 µs compiled, ``Taker``), i.e. +80% on
every take, and it would serialise every worker on a hot key. Measured accuracy without it: 4 processes flooding one
key for 10 s at rate 100, burst 50 admitted 1,049 (target 1,050 ±5%). Locks are taken only to create an
entry (a new key), to re-anchor after a ``rate`` change, and to evict.

Table full: a key may live only in its hash bucket (BUCKET entries). A new key takes an empty entry, else
an entry whose last writer died mid-rewrite (odd SEQ), else evicts the bucket's least recently used entry.
An evicted key that comes back starts with a full bucket, so eviction can only be permissive, never
wrongly reject; memory is fixed at ``ratelimit_entries`` regardless of how many keys are seen. Size the
table to the number of keys active within a refill period (burst / rate) to keep that rare.

Known, accepted races: two re-anchors that both read ANCHOR before either stores can leave the larger
(by the refill of the microseconds between them). ``fold`` (dead worker) adds a row
into ``retired`` before zeroing it, so a racing reader over-counts for a moment (rejects, never admits
extra). On aarch64, stores are not ordered as on x86-64; the seqlock then relies on the C call boundaries
between Python-level stores (see anchors.md §5.3).

Each process remembers where a (limiter, key) lives (``_where``: key -> generation, fingerprint, entry), so a
repeat key skips the keyed hash and the bucket scan; the entry is still read seqlock-consistent and its FP
checked, so an entry evicted or rewritten meanwhile is noticed and looked up afresh.
"""

from __future__ import annotations

import struct

from .buckets import FP, SEQ, BucketTable
from .layout import PlaneLayout
from .locks import RangeLocks
from .segments import Segment

REC = 6
RATE, ANCHOR, LAST = 2, 3, 4
WHERE_MAX = 4096        # (limiter, key) locations a process remembers (~1 MB); more keys are hashed each time
_PERSON = struct.Struct("<qq")


class RateLimitTable(BucketTable):
    SEGMENT = "ratelimit"
    REC = REC
    RANK = LAST
    PAYLOAD = (("d", RATE), ("d", ANCHOR))

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        e = layout.ratelimit_entries
        return (layout.max_limiters + e * REC + e * (layout.max_workers + 1)) * 8

    def __init__(self, seg: Segment, layout: PlaneLayout, locks: RangeLocks | None, lock_base: int,
                 secret: bytes) -> None:
        E = layout.ratelimit_entries
        self.W1 = layout.max_workers + 1
        gen_bytes = layout.max_limiters * 8
        super().__init__(seg, gen_bytes, E, locks, lock_base, secret)
        self.gen = seg.view(0, gen_bytes, "q")
        self.cnt = seg.view(gen_bytes + E * REC * 8, E * self.W1 * 8, "q")
        self._where: dict[tuple[int, bytes], tuple[int, int, int]] = {}

    def _entry(self, limiter: int, key: bytes, rate: float, now: float, rows: int) -> tuple[int, float]:
        """The entry of (limiter, key) anchored at ``rate``, and its ANCHOR: found or installed (``take`` has
        tried the remembered location first)."""
        gen = self.gen[limiter]
        fp = self._fp(_PERSON.pack(limiter, gen), key)
        b0 = self._bucket(fp)
        got = self._lookup(fp, b0)
        if got is not None and got[2] == rate:
            e, anchor = got[0], got[3]
        else:
            e, anchor = self._install_at(fp, b0, rate, now, rows)
        if len(self._where) >= WHERE_MAX:   # bounded: start over rather than track LRU
            self._where.clear()
        self._where[limiter, key] = (gen, fp, e)
        return e, anchor

    def _install_at(self, fp: int, b0: int, rate: float, now: float, rows: int) -> tuple[int, float]:
        """The entry of fp anchored at ``rate`` and its ANCHOR: the one installed meanwhile by another process,
        else (re)written under the bucket's lock with a full bucket at ``now``."""
        d, cnt, W1 = self.d, self.cnt, self.W1

        def current(r: int) -> float | None:
            return d[r + ANCHOR] if d[r + RATE] == rate else None

        def fill(r: int) -> float:
            s = r // REC * W1
            anchor = sum(cnt[s : s + 1 + rows]) - rate * now
            d[r + RATE] = rate
            d[r + ANCHOR] = anchor
            d[r + LAST] = now
            return anchor

        return self._install(fp, b0, fill, keep=current)

    def reset_limiter(self, limiter: int) -> None:
        self.gen[limiter] = self.gen[limiter] + 1

    def fold(self, slot: int) -> None:
        cnt, W1 = self.cnt, self.W1
        col = slot + 1
        for e, v in enumerate(cnt[col::W1].tolist()):
            if v:  # retired first: a racing reader over-counts for a moment (rejects, never over-admits)
                s = e * W1
                cnt[s] = cnt[s] + v
                cnt[s + col] = 0

    def occupancy(self, now: float, active_window: float = 60.0) -> dict:
        fps = self.q[FP::REC].tolist()
        last = self.d[LAST::REC].tolist()
        used = sum(1 for f in fps if f)
        active = sum(1 for f, t in zip(fps, last) if f and now - t <= active_window)
        return {"entries": self.E, "used": used, "active_last_60s": active}


class Taker:
    """``take`` for one writing process (``Plane.ratelimit_take``): the hot path, a native class when compiled
    (``ratelimit.pxd``). There the counts, generations and header are typed views, while the entry's words are
    read as before, one interpreted ``memoryview`` item per load: each load is then a call the C compiler cannot
    reorder or merge, so the seqlock's two SEQ loads stay two loads around the payload's."""

    def __init__(self, table: RateLimitTable, hdr: memoryview, rows_i: int, col: int) -> None:
        self.table = table
        self.q = table.q
        self.d = table.d
        self.gen = table.gen
        self.cnt = table.cnt
        self.where = table._where
        self.W1 = table.W1
        self.hdr = hdr                 # the plane header: ROWS, the worker rows readers sum
        self.rows_i = rows_i
        self.col = col                 # the counts column this process writes (0 = retired = master)

    def take(self, limiter: int, key: bytes, rate: float, burst: float, now: float) -> tuple[bool, int, float]:
        """Take one token from the bucket of (limiter, key): (admitted, tokens left, seconds until one is back)."""
        q, d = self.q, self.d
        rows = self.hdr[self.rows_i]
        where = self.where.get((limiter, key))
        e = -1
        anchor = 0.0
        if where is not None and where[0] == self.gen[limiter]:
            # the remembered entry, read seqlock-consistent in one try (a writer in progress: the slow path)
            e = where[2]
            r = e * REC
            seq = q[r + SEQ]
            if not seq & 1 and q[r + FP] == where[1] and d[r + RATE] == rate:
                anchor = d[r + ANCHOR]
                if q[r + SEQ] != seq:
                    e = -1
            else:
                e = -1
        if e < 0:
            e, anchor = self.table._entry(limiter, key, rate, now, rows)
        s = e * self.W1
        c = self.admitted(s, rows)
        tokens = burst + rate * now + anchor - c
        full = tokens > burst
        if full:
            tokens = burst
        if tokens < 1.0:
            return False, 0, (1.0 - tokens) / rate if rate > 0 else 1.0
        cnt = self.cnt
        i = s + self.col
        r = e * REC
        if full:
            # Full: admit, and re-anchor to "full at ``now`` minus our token" for the sum we read. Claims made by
            # others since that read are subtracted on top (stricter, never looser); the store is made only if
            # it lowers ANCHOR (removes tokens), so a stale or racing re-anchor can never add tokens.
            cnt[i] += 1
            new = c - rate * now
            if new < d[r + ANCHOR]:  # noqa: PLR1730 (store only when lowering)
                d[r + ANCHOR] = new
            after = burst - 1.0
        elif tokens >= rows + 1.0:
            # At least one token per worker that could be claiming right now: ours cannot be the one that
            # drives the bucket negative, so no verify is needed.
            cnt[i] += 1
            after = tokens - 1.0
        else:
            cnt[i] += 1                # claim, then verify against a fresh sum (another worker may race us)
            after = burst + rate * now + d[r + ANCHOR] - self.admitted(s, rows)
            if after < 0.0:
                cnt[i] -= 1
                return False, 0, (-after) / rate if rate > 0 else 1.0
        if now - d[r + LAST] > 0.05:
            d[r + LAST] = now
        return True, int(after), 0.0

    def admitted(self, s: int, rows: int) -> int:
        """Admissions of the entry whose counts start at word ``s``: retired plus every worker row in use."""
        cnt = self.cnt
        c = 0
        for j in range(s, s + 1 + rows):
            c += cnt[j]
        return c

    def close(self) -> None:
        """Let go of the views (``Plane.close``: a typed view holds an export of the segment's buffer)."""
        self.q = self.d = self.gen = self.cnt = self.hdr = None
