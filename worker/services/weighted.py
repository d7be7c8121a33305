"""``weighted``: a service of services, each child taking a share of the requests by its weight.

A child is any service (a load balancer, or another service of services), nested to any depth; the config check
(``shared/config/validate.py``) has ruled out cycles, so picking always ends at a load balancer's backend. A pick
returns that leaf service with its backend (``Picked``): the exchange then runs with the leaf's timeouts, passive
health and counters, exactly as if a router had named the leaf.

Invariants:

* Picking is smooth weighted round-robin (nginx's, as a load balancer's ``weighted`` strategy uses over servers):
  every child is chosen ``weight`` times per cycle of ``sum(weights)`` picks, interleaved (3:1 gives A A B A, never
  in blocks), deterministically from the generation's start, in each worker. A weight of 0 removes the child.
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
from typing import TYPE_CHECKING, Any, Protocol

from .balancer import Balancer
from .sticky import cookie_attributes, cookie_value

if TYPE_CHECKING:
    from ..runtime import Backend, Service

Fields = list[tuple[bytes, bytes]]
Picked = tuple["Service", "Backend", tuple[bytes, ...]]
"""(the leaf service, its backend, the Set-Cookie values the response gets)."""


class Node(Protocol):
    """A service as its parent picks through it (``runtime.Service.pick``)."""

    def pick(self, headers: Fields | None, now: float) -> Picked | None:
        """``headers`` None: a bare pick (no sticky session), as TCP and retries make."""


class Weighted:
    def __init__(self, children: list[tuple[str, Node, int]], sticky: dict[str, Any] | None) -> None:
        kept = [(name, node, weight) for name, node, weight in children if weight > 0]
        self.names = [name for name, _, _ in kept]
        self.children = [node for _, node, _ in kept]
        self.weights = [weight for _, _, weight in kept]
        self.current = [0] * len(kept)
        self.cookie = sticky["cookie"].encode() if sticky is not None else None
        if sticky is not None:
            attrs = cookie_attributes(sticky)
            self.pins = [hashlib.sha256(name.encode()).hexdigest()[:16].encode() for name in self.names]
            self.set_cookies = [(b"%s=%s; %s" % (self.cookie, pin, attrs),) for pin in self.pins]

    def pick(self, headers: Fields | None, now: float) -> Picked | None:
        if self.cookie is not None and headers is not None:
            return self._sticky_pick(headers, now)
        return self._pick(headers, now)[0]

    def _pick(self, headers: Fields | None, now: float) -> tuple[Picked | None, int]:
        """(the pick, the index of the child it went through)."""
        children, weights, current = self.children, self.weights, self.current
        n = len(children)
        skipped = 0                                  # bit i: child i failed to pick for this request
        for _ in range(n):
            best = -1
            total = 0
            for i in range(n):
                if skipped >> i & 1:
                    continue
                score = current[i] + weights[i]
                current[i] = score
                total += weights[i]
                if best < 0 or score > current[best]:
                    best = i
            if best < 0:
                break
            current[best] -= total
            picked = children[best].pick(headers, now)
            if picked is not None:
                return picked, best
            skipped |= 1 << best
        return None, -1

    def _sticky_pick(self, headers: Fields, now: float) -> Picked | None:
        pin = cookie_value(headers, self.cookie)  # type: ignore[arg-type]
        if pin is not None and pin in self.pins:
            picked = self.children[self.pins.index(pin)].pick(headers, now)
            if picked is not None:
                return picked
        picked, child = self._pick(headers, now)
        if picked is None:
            return None
        service, backend, cookies = picked
        return service, backend, cookies + self.set_cookies[child]


class KindBalancer(Balancer):
    """What code that picks a bare backend (the TCP and UDP proxies, channel-webhook) sees of a service of
    services: the backend of a pick through it."""

    strategy = "service-of-services"

    def __init__(self, node: Node) -> None:
        super().__init__(())
        self.node = node

    def pick(self) -> Backend | None:
        picked = self.node.pick(None, 0.0)
        return None if picked is None else picked[1]
