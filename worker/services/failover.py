"""``failover``: a primary service, and a fallback that serves while the primary cannot.

Both are any services (load balancers, weighted, other failovers: chains). The primary serves whenever its pick
succeeds — it has a healthy server by active and passive health, or, as a service of services, a live child —
and otherwise the fallback's pick is used, request by request, so traffic returns to the primary as soon as it
is back. Both down: no pick, and the gateway answers 503 (JSON body); a parent sees this service as down.

Invariant: the fallback is only asked when the primary's pick failed, so a sticky session or a round-robin turn
of the fallback is never spent on a request the primary served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .weighted import Fields, Node, Picked, pick_of

if TYPE_CHECKING:
    from collections.abc import Callable


class Failover:
    def __init__(self, primary: Node, fallback: Node) -> None:
        self.primary: Callable[[Fields | None, float], Picked | None] = pick_of(primary)
        self.fallback: Callable[[Fields | None, float], Picked | None] = pick_of(fallback)

    def pick(self, headers: Fields | None, now: float) -> Picked | None:
        picked = self.primary(headers, now)
        return picked if picked is not None else self.fallback(headers, now)
