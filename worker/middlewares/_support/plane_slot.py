"""The plane index the master allocated to a stateful middleware (``rate-limit``, ``circuit-breaker``).

The master keys limiters and breakers by ``<name>|<params hash>`` (``master/generations.py``) and hands the
indices to workers as ``compiled["slots"]``; a worker finds its middleware's by name, so the hash is computed in
one place only. Unchanged params keep the index across reloads, so the state (buckets, breaker) survives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...process import Worker


def slot_index(worker: Worker, kind: str, name: str) -> int:
    for key, idx in worker.slots.get(kind, {}).items():
        if key.rsplit("|", 1)[0] == name:
            return idx
    raise LookupError(f"no plane slot for {kind} '{name}' in this generation")
