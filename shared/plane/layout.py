"""Capacities of the shared-memory state plane, fixed when the master creates it.

``PlaneLayout`` is a frozen value: every table in every segment is sized from it once, at ``Plane.create``,
and a worker reads it back from the header segment at ``Plane.attach`` (so master and workers can never
disagree on offsets). Nothing grows later; a full table evicts (rate-limit, sticky) or refuses a new slot
(``SlotAllocator`` raises ``PlaneError``).

Hashed tables (``ratelimit_entries``, ``sticky_entries``) are split into buckets of ``BUCKET`` entries; a key
lives only in the bucket its hash picks, so a lookup reads at most ``BUCKET`` entries and the fcntl lock
stripe of a table is its bucket. Their sizes are rounded up to a multiple of ``BUCKET``.

Memory (bytes, W = max_workers): roughly
    counters   (W + 1) * (routers + services + backends) * 64  +  backends * W * 8
    ratelimit  ratelimit_entries * (48 + (W + 1) * 8)
    sticky     sticky_entries * 32
    health     backends * (96 + (W + 1) * 16);  breakers * (64 + (W + 1) * 8)
    ai         (W + 1) * 384 + W * services * 48 + backends * 8 + token_entries * (24 + (W + 1) * 40)
    observations  (W + 1) * ((routers + services) * 120 + routers * 96 + 7744)  (metrics histograms)
    middlewares   (W + 1) * max_middlewares * 160  (replies and fail-opens by middleware)
    traffic    services * (408 + W * 8)  (mirroring counters, failover activations, retry budget)
With the defaults (W = 64) that is about 73 MiB, most of it the per-worker rate-limit rows; size
``max_workers`` to the real worker count (plus spares for restarts in flight) where /dev/shm is small
(Docker's default is 64 MiB).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import PlaneError

BUCKET = 8  # entries per hash bucket (= per lock stripe) in the rate-limit and sticky tables


@dataclass(frozen=True)
class PlaneLayout:
    max_workers: int = 64
    max_backends: int = 1024
    max_routers: int = 1024
    max_services: int = 1024
    ratelimit_entries: int = 65536
    max_breakers: int = 1024
    sticky_entries: int = 65536
    max_limiters: int = 1024
    token_entries: int = 2048        # token-meter sliding windows (ai.py)
    max_middlewares: int = 256       # per-middleware counters (middlewares.py), one index per middleware name

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise PlaneError(f"PlaneLayout.{f.name} must be a positive integer, got {v!r}")
            if v > 1 << 24:
                raise PlaneError(f"PlaneLayout.{f.name} = {v} is larger than the supported {1 << 24}")
        for name in ("ratelimit_entries", "sticky_entries", "token_entries"):
            v = getattr(self, name)
            object.__setattr__(self, name, -(-v // BUCKET) * BUCKET)

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_tuple(cls, values: tuple[int, ...] | list[int]) -> PlaneLayout:
        names = [f.name for f in fields(cls)]
        if len(values) != len(names):
            raise PlaneError(f"layout record has {len(values)} fields, expected {len(names)}")
        return cls(**dict(zip(names, (int(v) for v in values))))

    @classmethod
    def field_count(cls) -> int:
        return len(fields(cls))
