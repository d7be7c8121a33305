"""The panic threshold (Envoy's ``healthy_panic_threshold``): a load balancer with too few healthy backends
spreads its traffic over all of them, healthy or not, rather than pile it on the few that are left (or, with
``panic = "fail"``, refuses it).

Healthy is what the strategies use: up by active checks and not ejected. The share is recomputed at most once
per tick of the worker's coarse clock (``Clock.now``, every 0.5 s), so a pick costs one comparison more.

Nesting — the rule the docs state: a load balancer in panic that is a child of a weighted, failover or
mirroring service reports itself *down* to its parent first, so the parent does what the operator configured
it for (a failover switches to its fallback, a weighted service gives the share to its siblings). Only when
that pick through the router's service finds nothing at all is the pick made again as a last resort
(``LastResort.pick``), and then a child in panic spreads (or, with ``fail``, stays down and the answer is 503).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .balancer import Backend, Balancer

if TYPE_CHECKING:
    from ..runtime import Clock

T = TypeVar("T")


class LastResort:
    """One per runtime: whether the current pick is the second, last-resort pass (single-threaded worker)."""

    active = False

    def pick(self, pick: Callable[..., T | None], *args: object) -> T | None:
        self.active = True
        try:
            return pick(*args)
        finally:
            self.active = False


class PanicBalancer(Balancer):
    """A strategy's picks while enough backends are healthy; all backends in turn (or none) below the threshold."""

    def __init__(self, inner: Balancer, threshold: int, fail: bool, clock: Clock, last_resort: LastResort) -> None:
        super().__init__(inner.backends)
        self.strategy = inner.strategy
        self.inner = inner
        self.threshold = threshold
        self.fail = fail
        self.clock = clock
        self.last_resort = last_resort
        self._at = -1.0
        self._panic = False
        self._next = 0

    def in_panic(self) -> bool:
        now = self.clock.now
        if now != self._at:
            self._at = now
            healthy = sum(1 for b in self.backends if b.is_healthy())
            self._panic = healthy * 100 < self.threshold * len(self.backends)
        return self._panic

    def pick(self) -> Backend | None:
        if not self.in_panic():
            return self.inner.pick()
        if self.fail:
            return None
        backends = self.backends
        self._next += 1
        return backends[self._next % len(backends)]

    def pick_as_child(self) -> Backend | None:
        """The pick a parent service makes: down while in panic, unless this is the last-resort pass."""
        if self.in_panic() and not self.last_resort.active:
            return None
        return self.pick()
