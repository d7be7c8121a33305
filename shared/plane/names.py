"""Names of slot indices, so a read-only attacher (``a3s-gateway status``) can label what it prints.

Layout (segment ``names``): for each kind in ``KINDS``, ``capacity(kind)`` records of REC int64 words:
    0 SEQ    seqlock (even = stable), written by the master only
    1 LEN    byte length of the UTF-8 name (0 = unnamed)
    2..7     the name, up to MAXLEN bytes, zero padded (longer names are cut at MAXLEN bytes)

Written by the master when it assigns slots (rare); read with the seqlock by the status tool.
"""

from __future__ import annotations

import struct

from .layout import PlaneLayout
from .segments import Segment

REC = 8
MAXLEN = (REC - 2) * 8
KINDS = ("backends", "routers", "services", "limiters", "breakers", "middlewares")
_WORDS = struct.Struct(f"<{REC - 2}q")


def _capacities(layout: PlaneLayout) -> dict[str, int]:
    return {
        "backends": layout.max_backends,
        "routers": layout.max_routers,
        "services": layout.max_services,
        "limiters": layout.max_limiters,
        "breakers": layout.max_breakers,
        "middlewares": layout.max_middlewares,
    }


class NameTable:
    SEGMENT = "names"

    @staticmethod
    def nbytes(layout: PlaneLayout) -> int:
        return sum(_capacities(layout).values()) * REC * 8

    def __init__(self, seg: Segment, layout: PlaneLayout) -> None:
        self.q = seg.view(0, self.nbytes(layout), "q")
        self.base: dict[str, int] = {}
        self.cap = _capacities(layout)
        off = 0
        for k in KINDS:
            self.base[k] = off
            off += self.cap[k] * REC

    def set(self, kind: str, idx: int, name: str) -> None:
        if not 0 <= idx < self.cap[kind]:
            raise IndexError(f"{kind} index {idx} out of range")
        raw = name.encode("utf-8")[:MAXLEN]
        words = _WORDS.unpack(raw.ljust(MAXLEN, b"\0"))
        q, r = self.q, self.base[kind] + idx * REC
        s = q[r]
        q[r] = s + 1
        q[r + 1] = len(raw)
        for j, w in enumerate(words):
            q[r + 2 + j] = w
        q[r] = s + 2

    def get(self, kind: str, idx: int) -> str | None:
        q, r = self.q, self.base[kind] + idx * REC
        for _ in range(64):
            s1 = q[r]
            if s1 & 1:
                continue
            n = q[r + 1]
            words = q[r + 2 : r + REC].tolist()
            if q[r] == s1:
                if not n:
                    return None
                return _WORDS.pack(*words)[:n].decode("utf-8", "replace")
        return None

    def named(self, kind: str) -> dict[int, str]:
        lens = self.q[self.base[kind] + 1 : self.base[kind] + self.cap[kind] * REC : REC].tolist()
        return {i: n for i, ln in enumerate(lens) if ln and (n := self.get(kind, i)) is not None}
