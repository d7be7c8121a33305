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

from .hashing import Fingerprinter
from .layout import BUCKET, PlaneLayout
from .locks import RangeLocks
from .segments import Segment

REC = 4
SEQ, FP, BACKEND, EXPIRES = range(4)
SPIN = 64
_PREFIX = b"a3s-sticky-v1\0\0\0"


class StickyTable:
    SEGMENT = "sticky"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return layout.sticky_entries * REC * 8

    def __init__(self, seg: Segment, layout: PlaneLayout, locks: RangeLocks | None, lock_base: int,
                 secret: bytes) -> None:
        self.E = layout.sticky_entries
        self.nbuckets = self.E // BUCKET
        self.q = seg.view(0, self.E * REC * 8, "q")
        self.d = seg.view(0, self.E * REC * 8, "d")
        self.locks = locks
        self.lock_base = lock_base
        self._fp = Fingerprinter(secret).fp

    def _lookup(self, fp: int, b0: int) -> tuple[int, int, float, int]:
        q, d = self.q, self.d
        r0 = b0 * REC
        try:
            k = q[r0 + FP : r0 + BUCKET * REC : REC].tolist().index(fp)
        except ValueError:
            return -1, -1, 0.0, 0
        r = r0 + k * REC
        for _ in range(SPIN):
            s1 = q[r + SEQ]
            if s1 & 1:
                continue
            if q[r + FP] != fp:
                break
            backend = q[r + BACKEND]
            exp = d[r + EXPIRES]
            if q[r + SEQ] == s1:
                return b0 + k, backend, exp, s1
        return -1, -1, 0.0, 0

    def _where(self, key: bytes) -> tuple[int, int]:
        fp = self._fp(_PREFIX, key)
        return fp, (fp >> 16) % self.nbuckets * BUCKET

    def get(self, key: bytes, now: float) -> int | None:
        fp, b0 = self._where(key)
        e, backend, exp, _ = self._lookup(fp, b0)
        if e < 0 or exp <= now:
            return None
        return backend

    def bind(self, key: bytes, backend: int, now: float, ttl: float) -> None:
        fp, b0 = self._where(key)
        expires = now + ttl
        e, cur, _, seq = self._lookup(fp, b0)
        if e >= 0 and cur == backend:
            r = e * REC
            self.d[r + EXPIRES] = expires
            if self.q[r + SEQ] == seq:
                return
        q, d = self.q, self.d
        k = self.lock_base + b0 // BUCKET
        self.locks.acquire(k)
        try:
            victim, best = -1, None
            for e in range(b0, b0 + BUCKET):
                r = e * REC
                s, efp = q[r + SEQ], q[r + FP]
                if efp == fp and not s & 1:
                    victim = e
                    break
                if s & 1:
                    score = -3.0
                elif efp == 0:
                    score = -2.0
                else:
                    exp = d[r + EXPIRES]
                    score = -1.0 if exp <= now else exp
                if best is None or score < best:
                    victim, best = e, score
            r = victim * REC
            s = q[r + SEQ]
            q[r + SEQ] = s + 1 if not s & 1 else s
            q[r + FP] = fp
            q[r + BACKEND] = backend
            d[r + EXPIRES] = expires
            q[r + SEQ] = (s | 1) + 1
        finally:
            self.locks.release(k)

    def unbind(self, key: bytes) -> None:
        fp, b0 = self._where(key)
        e, _, _, _ = self._lookup(fp, b0)
        if e >= 0:
            self.d[e * REC + EXPIRES] = 0.0

    def occupancy(self, now: float) -> dict:
        fps = self.q[FP::REC].tolist()
        exps = self.d[EXPIRES::REC].tolist()
        used = sum(1 for f in fps if f)
        live = sum(1 for f, x in zip(fps, exps) if f and x > now)
        return {"entries": self.E, "used": used, "live": live}
