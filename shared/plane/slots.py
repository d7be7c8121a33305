"""Stable slot indices for named things (backends, routers, services, limiters, breakers). Master only.

The plane's tables are arrays indexed by slot; the config speaks in names. ``SlotAllocator`` maps each key
(any hashable: a backend URL, a router name, ``(service, url)``...) to an index in ``[0, capacity)`` that
survives reloads:

- ``assign(keys, generation)`` is called for every new config generation with all keys it uses. A key
  that already has an index keeps it (same key -> same index, across any number of reloads). A key that
  is absent from generation ``g`` is *released at g*: its index stays reserved, and if the key comes
  back before the index is reused it gets the same index again, state intact.
- ``retire(oldest_live_generation)``: the master calls it once no worker can still be serving a
  generation older than ``oldest_live_generation`` (workers report theirs in the worker rows). Indices
  released at a generation ``<= oldest_live_generation`` become reusable: nobody can touch them any more.
- A new key takes the lowest reusable index, else the next never-used one; ``PlaneError`` when none is left.
  ``SlotAssignment.fresh`` lists the indices handed to new keys: the master must zero their shared state
  (``Plane.reset_backend`` / ``reset_limiter`` / ``reset_breaker``...) *before* publishing the generation,
  and may do so without racing workers because none uses those indices.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from .errors import PlaneError


@dataclass(frozen=True)
class SlotAssignment:
    indices: dict  # key -> index, for every key of the generation
    fresh: tuple[int, ...]  # indices given to new keys (zero their shared state before use)
    released: tuple[int, ...]  # indices whose keys this generation dropped (reusable after retire)


class SlotAllocator:
    def __init__(self, capacity: int, kind: str = "slot") -> None:
        self.capacity = capacity
        self.kind = kind
        self._live: dict[Hashable, int] = {}
        self._released: dict[Hashable, tuple[int, int]] = {}  # key -> (index, generation released at)
        self._reusable: list[int] = []  # heap of indices whose released key is forgotten
        self._reusable_keys: dict[int, Hashable] = {}  # index -> released key still reclaimable
        self._next = 0

    def assign(self, keys: Iterable[Hashable], generation: int) -> SlotAssignment:
        wanted = list(dict.fromkeys(keys))
        wanted_set = set(wanted)
        released = []
        for key, idx in list(self._live.items()):
            if key not in wanted_set:
                del self._live[key]
                self._released[key] = (idx, generation)
                released.append(idx)
        out, fresh = {}, []
        for key in wanted:
            if key in self._live:
                out[key] = self._live[key]
                continue
            back = self._released.pop(key, None)
            if back is not None:
                idx = back[0]
                self._reusable_keys.pop(idx, None)
                if idx in self._reusable:
                    self._reusable.remove(idx)
                    heapq.heapify(self._reusable)
            else:
                idx = self._take(len(wanted))
                fresh.append(idx)
            self._live[key] = idx
            out[key] = idx
        return SlotAssignment(out, tuple(fresh), tuple(released))

    def _take(self, wanted: int) -> int:
        while self._reusable:
            idx = heapq.heappop(self._reusable)
            old = self._reusable_keys.pop(idx, None)
            if old is not None:
                self._released.pop(old, None)
            return idx
        if self._next < self.capacity:
            self._next += 1
            return self._next - 1
        raise PlaneError(
            f"no free {self.kind} slot: {wanted} {self.kind}s wanted, capacity {self.capacity} "
            f"({len(self._released)} more held until older generations drain); raise the plane layout's limit"
        )

    def retire(self, oldest_live_generation: int) -> list[int]:
        """Make indices released at generations <= oldest_live_generation reusable; returns them."""
        freed = []
        for key, (idx, gen) in self._released.items():
            if gen <= oldest_live_generation and idx not in self._reusable_keys:
                self._reusable_keys[idx] = key
                heapq.heappush(self._reusable, idx)
                freed.append(idx)
        return freed

    def index(self, key: Hashable) -> int | None:
        return self._live.get(key)

    def items(self) -> dict:
        return dict(self._live)
