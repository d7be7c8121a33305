"""Sticky-session bindings (cookie value -> backend index) shared by all workers, with TTL and eviction.

Layout (segment ``sticky``): ``sticky_entries`` x REC words, in buckets of BUCKET (one fcntl lock stripe
per bucket):

    0 SEQ      int64  seqlock: odd while a lock holder rewrites the entry
    1 FP       int64  keyed 64-bit fingerprint of the key; 0 = empty
    2 BACKEND  int64  backend slot index
    3 EXPIRES  float  monotonic seconds after which the binding is ignored

``get`` is lock-free: find the fingerprint among the bucket's BUCKET entries, read BACKEND and EXPIRES
between two equal, even SEQ reads. ``bind`` of a key already bound to the same backend only stores
EXPIRES (one aligned word, lock-free). A new key, or a key moving to another backend, takes the bucket's
lock and rewrites the entry under the seqlock: an empty entry first, else one left odd by a writer that
died, else an expired one, else the one that expires soonest is evicted (its client gets re-picked and a
new cookie). Memory is fixed at ``sticky_entries`` x 32 bytes whatever the number of clients.

The key should identify the service as well as the client (e.g. ``b"%d:" % service_idx + cookie``).
Whether a bound backend is still healthy or still exists is the caller's check (re-pick and re-bind).
"""

from __future__ import annotations

from .buckets import FP, SEQ, BucketTable
from .layout import PlaneLayout
from .locks import RangeLocks
from .segments import Segment

REC = 4
BACKEND, EXPIRES = 2, 3
_PREFIX = b"a3s-sticky-v1\0\0\0"


class StickyTable(BucketTable):
    SEGMENT = "sticky"
    REC = REC
    RANK = EXPIRES
    PAYLOAD = (("q", BACKEND), ("d", EXPIRES))

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.sticky_entries * REC * 8

    def __init__(self, seg: Segment, layout: PlaneLayout, locks: RangeLocks | None, lock_base: int,
                 secret: bytes) -> None:
        super().__init__(seg, 0, layout.sticky_entries, locks, lock_base, secret)

    def _where(self, key: bytes) -> tuple[int, int]:
        fp = self._fp(_PREFIX, key)
        return fp, self._bucket(fp)

    def get(self, key: bytes, now: float) -> int | None:
        fp, b0 = self._where(key)
        got = self._lookup(fp, b0)
        return got[2] if got is not None and got[3] > now else None

    def bind(self, key: bytes, backend: int, now: float, ttl: float) -> None:
        fp, b0 = self._where(key)
        expires = now + ttl
        got = self._lookup(fp, b0)
        if got is not None and got[2] == backend:
            r = got[0] * REC
            self.d[r + EXPIRES] = expires
            if self.q[r + SEQ] == got[1]:
                return
        q, d = self.q, self.d

        def fill(r: int) -> None:
            q[r + BACKEND] = backend
            d[r + EXPIRES] = expires

        self._install(fp, b0, fill, expired_at=now)   # a held entry is rewritten too (new backend, or a raced refresh)

    def unbind(self, key: bytes) -> None:
        fp, b0 = self._where(key)
        got = self._lookup(fp, b0)
        if got is not None:
            self.d[got[0] * REC + EXPIRES] = 0.0

    def occupancy(self, now: float) -> dict:
        fps = self.q[FP::REC].tolist()
        exps = self.d[EXPIRES::REC].tolist()
        used = sum(1 for f in fps if f)
        live = sum(1 for f, x in zip(fps, exps) if f and x > now)
        return {"entries": self.E, "used": used, "live": live}

