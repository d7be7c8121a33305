"""``weighted``: a service of services, each child taking a share of the requests by its weight.

A child is any service (a load balancer, or another service of services), nested to any depth; the config check
(``shared/config/validate.py``) has ruled out cycles, so picking always ends at a load balancer's backend. A pick
returns that leaf service with its backend (``Picked``): the exchange then runs with the leaf's timeouts, passive
health and counters, exactly as if a router had named the leaf.

Invariants:

* Picking is smooth weighted round-robin (nginx's, as a load balancer's ``weighted`` strategy uses over servers):
  every child is chosen ``weight`` times per cycle of ``sum(weights)`` picks (weights divided by their gcd),
  interleaved (3:1 gives A A B A, never in blocks), deterministically from the generation's start, in each
  worker. A weight of 0 removes the child.
* Health propagates: a child whose pick fails (every server down by active or passive health, or a service of
  services with no live child) is passed over for that request and the turn goes to the next child by score, so
  its share goes to its siblings in their ratio and comes back when it does. With no live child the pick fails,
  which is how this service reports itself down to its parent.
* ``sticky``: the cookie holds a digest of the child's name — neither a backend nor a session — so every worker,
  and every generation that keeps the child, sends it the same way with no shared state; a client whose child is
  gone or down is picked again and gets a new cookie.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .balancer import Balancer
from .sticky import cookie_attributes, cookie_value

if TYPE_CHECKING:
    from ..runtime import Backend, Service
    from .panic import LastResort

Fields = list[tuple[bytes, bytes]]
Picked = tuple["Service", "Backend", tuple[bytes, ...]]
"""(the leaf service, its backend, the Set-Cookie values the response gets)."""


class Node(Protocol):
    """A service as its parent picks through it (``runtime.Service.pick``)."""

    def pick(self, headers: Fields | None, now: float) -> Picked | None:
        """``headers`` None: a bare pick (no sticky session), as TCP and retries make."""


SCHEDULE_MAX = 1 << 14
"""Longest precomputed cycle; larger weight sums are scaled down to it (a share moves by at most 1/16384). Building
it costs O(cycle × children) once per generation."""


def schedule(weights: list[int]) -> list[int]:
    """One cycle of smooth weighted round-robin over ``weights`` (all > 0): the child index of each pick."""
    divisor = math.gcd(*weights)
    weights = [w // divisor for w in weights]
    total = sum(weights)
    if total > SCHEDULE_MAX:
        weights = [max(1, w * SCHEDULE_MAX // total) for w in weights]
        total = sum(weights)
    current = [0] * len(weights)
    out = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        out.append(best)
    return out


class Weighted:
    """Picks walk a ring of the children's pick functions laid out in smooth WRR order (``schedule``), one step per
    request, so the hot path costs the same for any weights; a child that cannot serve is passed over and the
    request takes the next turn of another child."""

    replay = None                                    # only a failover replays a request elsewhere (failover.py)
    tee = None                                       # only mirroring copies a request (mirroring.py)

    def __init__(self, children: list[tuple[str, Node, int]], sticky: dict[str, Any] | None) -> None:
        kept = [(name, node, weight) for name, node, weight in children if weight > 0]
        self.names = [name for name, _, _ in kept]
        self.picks = [pick_of(node) for _, node, _ in kept]
        order = schedule([weight for _, _, weight in kept]) if kept else []
        self.turns = itertools.cycle([self.picks[i] for i in order])   # shared by sticky and unpinned picks
        self.ring = len(order)
        self.children = len(kept)
        if sticky is not None:
            cookie = sticky["cookie"].encode()
            attrs = cookie_attributes(sticky)
            pins = [hashlib.sha256(name.encode()).hexdigest()[:16].encode() for name in self.names]
            self.sticky = (cookie, {pin: pick for pin, pick in zip(pins, self.picks, strict=True)},
                           {pick: (b"%s=%s; %s" % (cookie, pin, attrs),) for pin, pick in zip(pins, self.picks,
                                                                                             strict=True)})
            self.pick = self._sticky_pick                                 # type: ignore[method-assign]

    def pick(self, headers: Fields | None, now: float) -> Picked | None:
        if self.ring == 0:
            return None
        picked = next(self.turns)(headers, now)
        return picked if picked is not None else self._pass_over(headers, now)[0]

    def _pass_over(self, headers: Fields | None, now: float, failed: tuple[Callable, ...] = ()
                   ) -> tuple[Picked | None, Callable | None]:
        """The next turns of the children that did not fail yet, until one serves (with its pick function)."""
        turns = self.turns
        failed = set(failed)
        for _ in range(self.ring):
            if len(failed) >= self.children:
                break
            pick = next(turns)
            if pick in failed:
                continue
            picked = pick(headers, now)
            if picked is not None:
                return picked, pick
            failed.add(pick)
        return None, None

    def _sticky_pick(self, headers: Fields | None, now: float) -> Picked | None:
        cookie, by_pin, set_cookie = self.sticky
        pinned = by_pin.get(cookie_value(headers, cookie)) if headers is not None else None  # type: ignore[arg-type]
        if pinned is not None:
            picked = pinned(headers, now)
            if picked is not None:
                return picked
        picked, pick = self._pass_over(headers, now, () if pinned is None else (pinned,))
        if picked is None or headers is None:
            return picked
        service, backend, cookies = picked
        return service, backend, cookies + set_cookie[pick]


def pick_of(node: Node) -> Callable[[Fields | None, float], Picked | None]:
    """The function a parent calls to pick through ``node``: for a plain load balancer, its balancer's pick
    wrapped to name the service (one call fewer than ``Service.pick`` per request). A load balancer with a panic
    threshold reports itself down while in panic, except in the last-resort pass (``panic.py``)."""
    service: Any = node
    if getattr(service, "activator", None) is not None:
        return service.activator.pick
    balancer = getattr(service, "balancer", None)
    child_pick = getattr(balancer, "pick_as_child", None)
    if getattr(service, "kind", None) is not None or getattr(service, "sticky", True) is not None:
        if child_pick is None:
            return node.pick
        in_panic, last_resort = balancer.in_panic, balancer.last_resort  # type: ignore[union-attr]

        def sticky_pick(headers: Fields | None, now: float) -> Picked | None:
            return None if in_panic() and not last_resort.active else node.pick(headers, now)

        return sticky_pick
    pick_backend = child_pick or balancer.pick

    def pick(headers: Fields | None, now: float) -> Picked | None:
        backend = pick_backend()
        return None if backend is None else (service, backend, ())

    return pick


class KindBalancer(Balancer):
    """What code that picks a bare backend (the TCP and UDP proxies, channel-webhook) sees of a service of
    services: the backend of a pick through it."""

    strategy = "service-of-services"

    def __init__(self, node: Node, last_resort: LastResort | None = None) -> None:
        super().__init__(())
        self.node = node
        self.last_resort = last_resort

    def pick(self) -> Backend | None:
        picked = self.node.pick(None, 0.0)
        if picked is None and self.last_resort is not None:
            picked = self.last_resort.pick(self.node.pick, None, 0.0)
        return None if picked is None else picked[1]
