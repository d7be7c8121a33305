"""Load-balancing strategies: pick one backend among the healthy ones of a service.

Each strategy is a small object built once per generation with the service's backends; ``pick()`` is on the
hot path and returns None when no backend is healthy (the caller answers 503). Health is read through
``Backend.is_healthy()`` so a strategy never needs to know where health comes from (active checks, passive
failures, or both via the shared-memory plane).

- ``round-robin``: rotates over the healthy backends.
- ``weighted``: smooth weighted round-robin (nginx's algorithm): weights 3:1 give A A B A, interleaved, never
  in blocks; a weight of 0 takes no traffic.
- ``least-connections``: fewest requests in flight (summed over all workers when the plane is on), ties
  broken by rotation so equal backends share load.
- ``random``: uniform choice from ``random.SystemRandom``-seeded ``random.Random`` (a real PRNG, not a clock).

Compiled, the strategies are native classes (``balancer.pxd``); a strategy in plain Python extends the base.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol


class Backend(Protocol):
    weight: int

    def is_healthy(self) -> bool: ...

    def inflight(self) -> int: ...


class Balancer:
    strategy = ""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = list(backends)

    def healthy(self) -> list[Backend]:
        return [b for b in self.backends if b.is_healthy()]

    def pick(self) -> Backend | None:
        raise NotImplementedError


class RoundRobin(Balancer):
    strategy = "round-robin"

    def __init__(self, backends: Sequence[Backend]) -> None:
        super().__init__(backends)
        self._next = 0

    def pick(self) -> Backend | None:
        backends = self.backends
        n = len(backends)
        for _ in range(n):
            b = backends[self._next % n]
            self._next += 1
            if b.is_healthy():
                return b
        return None


class SmoothWeighted(Balancer):
    """nginx's smooth weighted round-robin: add each weight to its current score, take the highest, subtract
    the total from the winner. Over one cycle every backend is chosen exactly ``weight`` times, spread out."""

    strategy = "weighted"

    def __init__(self, backends: Sequence[Backend]) -> None:
        super().__init__(backends)
        self._current = [0] * len(self.backends)

    def pick(self) -> Backend | None:
        best = -1
        total = 0
        current = self._current
        for i, b in enumerate(self.backends):
            if b.weight <= 0 or not b.is_healthy():
                continue
            current[i] += b.weight
            total += b.weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return self.backends[best]


class LeastConnections(Balancer):
    strategy = "least-connections"

    def __init__(self, backends: Sequence[Backend]) -> None:
        super().__init__(backends)
        self._offset = 0

    def pick(self) -> Backend | None:
        backends = self.backends
        n = len(backends)
        self._offset = (self._offset + 1) % n
        best = None
        best_load = 0
        for k in range(n):
            b = backends[(self._offset + k) % n]
            if not b.is_healthy():
                continue
            load = b.inflight()
            if best is None or load < best_load:
                best, best_load = b, load
        return best


class Random(Balancer):
    strategy = "random"

    def __init__(self, backends: Sequence[Backend]) -> None:
        super().__init__(backends)
        self._rng = random.Random(random.SystemRandom().getrandbits(64))

    def pick(self) -> Backend | None:
        healthy = self.healthy()
        return self._rng.choice(healthy) if healthy else None


STRATEGIES: dict[str, type[Balancer]] = {
    cls.strategy: cls for cls in (RoundRobin, SmoothWeighted, LeastConnections, Random)
}


def make(strategy: str, backends: Sequence[Backend]) -> Balancer:
    return STRATEGIES[strategy](backends)
