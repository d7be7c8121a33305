"""Node-wide state of the AI-agent extensions: LLM token windows, priority admission gauges, model-probe
states and the extensions' counters.

Layout (segment ``ai``, int64/float64 words):

    counters   (max_workers + 1) x NC: row 0 retired (master), row w + 1 worker w only. Columns: COUNTERS.
    gauges     max_workers x max_services x GW: worker w's priority admission state of service s:
               word 0 = requests it admitted that are still in flight, words 1..5 = requests it holds waiting,
               by priority (critical .. best-effort). Single writer (the worker); zeroed when it dies.
    agents     max_backends words, written by the master's model probe: AGENT_STATES index + 1 (0 = not
               probed). The probe also drives the health flag (only ``ready`` is healthy); ``busy`` backends
               are a fallback when no backend of the service is ready.
    tokens     token_entries x (REC + (max_workers + 1) x RING) words, buckets of BUCKET (a lock stripe each):
                   0 SEQ, 1 FP (keyed fingerprint of meter + key + window; 0 = empty), 2 LAST (float, LRU)
               then per column (0 retired, w + 1 worker w) RING words, each packing
               ``(sub-window id mod 2**23) << 40 | tokens`` for one sub-window of the ring.

Sliding window (the original used fixed windows): a window of length ``window`` is split into SUB
sub-windows; usage at ``now`` is the sum of the last SUB sub-windows (the current one included) plus the
oldest one weighted by the part of it still inside the window. Every column is written only by its worker,
one aligned word at a time (``(id << 40) | n``): no lock on the hot path. New keys take the bucket's fcntl
lock (``buckets.py``, as rate-limit does); a full bucket evicts its least recently used entry (an evicted key
restarts at 0: permissive, never a wrong rejection).
"""

from __future__ import annotations

from ..vocabulary import AGENT_STATES, KEY_KINDS, LEVELS, PRIORITIES
from .buckets import FP, SEQ, BucketTable
from .layout import BUCKET, PlaneLayout
from .locks import RangeLocks
from .segments import Segment

CACHE_COUNTERS = ("cache_hits_exact", "cache_hits_semantic", "cache_misses", "cache_bypassed", "cache_tokens_saved",
                  "cache_embedding_failures")
GUARD_REASONS = ("denied_pattern", "denied_detector", "not_allowed")
COUNTERS = (
    *(f"privacy_{lv}" for lv in LEVELS), "privacy_tee_routed", "privacy_redacted",
    *(f"tokens_{k}" for k in KEY_KINDS), *(f"token_rejected_{k}" for k in KEY_KINDS), "tokens_estimated",
    *(f"priority_shed_{p}" for p in PRIORITIES), *(f"priority_queued_{p}" for p in PRIORITIES),
    *(f"priority_timeout_{p}" for p in PRIORITIES),
    *CACHE_COUNTERS, *(f"guard_{r}" for r in GUARD_REASONS),
)
COUNTER_INDEX = {n: i for i, n in enumerate(COUNTERS)}
NC = 48
GW = 1 + len(PRIORITIES)
REC = 3
LAST = 2
SUB = 4               # sub-windows per window
RING = SUB + 1        # + the partly expired oldest one
ID_BITS = 23
ID_MASK = (1 << ID_BITS) - 1
N_MASK = (1 << 40) - 1
_PERSON = b"a3s-tokens-v1\0\0\0"
assert len(COUNTERS) <= NC


class AiTable(BucketTable):
    SEGMENT = "ai"
    REC = REC
    RANK = LAST

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        W = layout.max_workers
        return 8 * ((W + 1) * NC + W * layout.max_services * GW + layout.max_backends
                    + layout.token_entries * (REC + (W + 1) * RING))

    def __init__(self, seg: Segment, layout: PlaneLayout, locks: RangeLocks | None, lock_base: int,
                 secret: bytes) -> None:
        W = layout.max_workers
        self.W1 = W + 1
        self.S = layout.max_services
        off = 0
        self.c = seg.view(off, self.W1 * NC * 8)
        off += self.W1 * NC * 8
        self.g = seg.view(off, W * self.S * GW * 8)
        off += W * self.S * GW * 8
        self.agents = seg.view(off, layout.max_backends * 8)
        off += layout.max_backends * 8
        super().__init__(seg, off, layout.token_entries, locks, lock_base, secret)
        off += self.E * REC * 8
        self.t = seg.view(off, self.E * self.W1 * RING * 8)

    # ------------------------------------------------------------ counters / gauges
    def add(self, col: int, name: str, n: int = 1) -> None:
        i = col * NC + COUNTER_INDEX[name]
        self.c[i] = self.c[i] + n

    def counters(self, rows: int) -> dict[str, int]:
        out = [0] * NC
        for r in range(rows + 1):
            for i, v in enumerate(self.c[r * NC:(r + 1) * NC].tolist()):
                out[i] += v
        return dict(zip(COUNTERS, out, strict=False))

    def gauge_add(self, slot: int, service: int, word: int, n: int) -> None:
        i = (slot * self.S + service) * GW + word
        self.g[i] = self.g[i] + n

    def gauges(self, service: int, rows: int) -> list[int]:
        """[in flight, waiting by priority...] of a service, summed over workers."""
        out = [0] * GW
        for w in range(rows):
            s = (w * self.S + service) * GW
            for i, v in enumerate(self.g[s:s + GW].tolist()):
                out[i] += v
        return out

    # ------------------------------------------------------------ model probe states (master writes)
    def set_agent(self, backend: int, state: str | None) -> None:
        self.agents[backend] = 0 if state is None else AGENT_STATES.index(state) + 1

    def agent(self, backend: int) -> str | None:
        v = self.agents[backend]
        return AGENT_STATES[v - 1] if 0 < v <= len(AGENT_STATES) else None

    # ------------------------------------------------------------ token windows
    def _entry(self, key: bytes, now: float, create: bool) -> int:
        fp = self._fp(_PERSON, key)
        b0 = self._bucket(fp)
        e = self._find(fp, b0)
        if e >= 0 and not self.q[e * REC + SEQ] & 1:
            if now - self.d[e * REC + LAST] > 0.5:
                self.d[e * REC + LAST] = now
            return e
        if e < 0 and not create:
            return -1
        d, t, size = self.d, self.t, self.W1 * RING

        def fill(r: int) -> None:
            s = r // REC * size
            for i in range(s, s + size):
                t[i] = 0
            d[r + LAST] = now

        return self._install(fp, b0, fill, keep=_installed_meanwhile)[0]

    def token_record(self, key: bytes, window: float, n: int, now: float, col: int) -> None:
        self._add(self._entry(key, now, True), window, n, now, col)

    def _add(self, e: int, window: float, n: int, now: float, col: int) -> None:
        sub = int(now * SUB / window)
        i = (e * self.W1 + col) * RING + sub % RING
        t = self.t
        w = t[i]
        tag = sub & ID_MASK
        t[i] = (w + n) if (w >> 40) == tag else (tag << 40) | (n & N_MASK)

    def token_usage(self, key: bytes, window: float, now: float, rows: int) -> tuple[float, list[int]]:
        """(sliding-window usage, tokens per sub-window oldest first: [cur-SUB .. cur])."""
        e = self._entry(key, now, False)
        if e < 0:
            return 0.0, [0] * RING
        return self._usage(e, window, now, rows)

    def _usage(self, e: int, window: float, now: float, rows: int) -> tuple[float, list[int]]:
        per = [0] * RING
        pos = now * SUB / window
        sub = int(pos)
        tags = [(sub - SUB + j) & ID_MASK for j in range(RING)]
        t = self.t
        base = e * self.W1 * RING
        for col in range(rows + 1):
            s = base + col * RING
            for w in t[s:s + RING].tolist():
                if w:
                    tag = w >> 40
                    for j in range(RING):
                        if tags[j] == tag:
                            per[j] += w & N_MASK
                            break
        frac = pos - sub
        return per[0] * (1.0 - frac) + sum(per[1:]), per

    def token_charge(self, budgets: list[tuple[bytes, float, float]], n: int, now: float, col: int,
                     rows: int) -> tuple[int, list[float], list[int]]:
        """Check every (key, window, limit) and charge ``n`` to all of them under their buckets' locks, so two
        workers cannot both admit on the same last tokens. Entries are created before the locks are taken
        (``_install`` takes and releases a bucket lock itself, which would release ours: fcntl locks are per
        process). (-1 when charged, else the index of the first budget at or over its limit; each budget's usage
        before the charge, as far as it was read; the refused budget's sub-window amounts, oldest first)."""
        entries = [self._entry(key, now, True) for key, _, _ in budgets]
        stripes = sorted({self.lock_base + e // BUCKET for e in entries})
        locks = self.locks
        for k in stripes:
            locks.acquire(k)  # type: ignore[union-attr]
        used: list[float] = []
        try:
            for i, ((_, window, limit), e) in enumerate(zip(budgets, entries, strict=True)):
                total, per = self._usage(e, window, now, rows)
                used.append(total)
                if total >= limit:
                    return i, used, per
            for (_, window, _), e in zip(budgets, entries, strict=True):
                self._add(e, window, n, now, col)
            return -1, used, []
        finally:
            for k in reversed(stripes):
                locks.release(k)  # type: ignore[union-attr]

    def token_settle(self, key: bytes, window: float, charged: int, at: float, n: int, now: float,
                     col: int) -> None:
        """Take back a pre-charge (``charged`` at time ``at``, from this worker's column: still its single
        writer) if its sub-window is still in the ring, then record the real ``n`` now."""
        e = self._entry(key, now, n > 0)
        if e < 0:
            return
        sub = int(at * SUB / window)
        i = (e * self.W1 + col) * RING + sub % RING
        w = self.t[i]
        if charged and (w >> 40) == sub & ID_MASK:
            self.t[i] = w - min(charged, w & N_MASK)
        if n > 0:
            self._add(e, window, n, now, col)

    @staticmethod
    def retry_after(per: list[int], limit: float, window: float, now: float) -> float:
        """Seconds until the sliding usage falls below ``limit`` if nothing more is spent."""
        sub_len = window / SUB
        pos = now / sub_len
        into = pos - int(pos)
        # the oldest sub-window drains linearly until the current one ends; each later one in turn
        remaining = sum(per[1:]) + per[0] * (1.0 - into)
        t = 0.0
        for j in range(RING):
            span = (1.0 - into) * sub_len if j == 0 else sub_len
            cnt = per[j] * (1.0 - into) if j == 0 else per[j]
            if remaining - cnt < limit:
                need = remaining - limit + 1e-9
                return t + (span * need / cnt if cnt else 0.0)
            remaining -= cnt
            t += span
        return t

    # ------------------------------------------------------------ lifecycle
    def fold(self, slot: int) -> None:
        c, col = self.c, slot + 1
        for i, v in enumerate(c[col * NC:(col + 1) * NC].tolist()):
            if v:
                c[i] = c[i] + v
                c[col * NC + i] = 0
        s = slot * self.S * GW
        for i in range(s, s + self.S * GW):
            if self.g[i]:
                self.g[i] = 0
        # token words of a dead worker stay: usage it recorded still counts until it slides out

    def occupancy(self) -> dict:
        used = sum(1 for f in self.q[FP::REC].tolist() if f)
        return {"token_entries": self.E, "used": used}


def _installed_meanwhile(r: int) -> bool:
    """A key's entry found under the lock was installed by another process since our lock-free look: use it."""
    return True
