"""``failover``: a primary service, and a fallback that serves while the primary cannot.

Both are any services (load balancers, weighted, other failovers: chains). The primary serves whenever its pick
succeeds — it has a healthy server by active and passive health, or, as a service of services, a live child —
and otherwise the fallback's pick is used, request by request, so traffic returns to the primary as soon as it
is back. Both down: no pick, and the gateway answers 503 (JSON body); a parent sees this service as down.

With ``errors`` (a failover that a router names): the request body is kept, up to ``max_body_bytes``, while the
primary serves it; a primary answer whose status is listed is dropped unread and the request goes, body replayed,
to the fallback — once, for every method (the status says the primary did not serve it). A body over the limit,
or a primary that already answered the client, leaves the primary's answer standing. This rides on the retry
path of the exchange (``ex.retry``, ``exchange.retry_later``): a ``retry`` middleware on the same router keeps
that path, and the failover then acts on health alone.

Activations (``a3s_gateway_failover_activations_total``): each worker counts a switch from primary to fallback
once, when its first pick after a primary pick falls through, so an outage counts once per worker that saw it.

Invariant: the fallback is only asked when the primary's pick failed (or, with ``errors``, its answer), so a
sticky session or a round-robin turn of the fallback is never spent on a request the primary served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..middlewares.retry import Retry
from .weighted import Fields, Node, Picked, pick_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...shared.plane import Plane
    from ..exchange import Exchange


class Failover:
    tee = None                               # only mirroring copies a request (mirroring.py)

    def __init__(self, name: str, primary: Node, fallback: Node, errors: dict[str, Any] | None, idx: int,
                 plane: Plane) -> None:
        self.primary: Callable[[Fields | None, float], Picked | None] = pick_of(primary)
        self.fallback: Callable[[Fields | None, float], Picked | None] = pick_of(fallback)
        self.replay = StatusReplay(name, errors) if errors is not None else None
        self.primary_picked = True           # the last pick's side, read by ``start`` right after it (one thread)
        self.idx = idx
        self.plane = plane

    def pick(self, headers: Fields | None, now: float) -> Picked | None:
        picked = self.primary(headers, now)
        if picked is not None:
            self.primary_picked = True
            return picked
        if self.primary_picked:              # this worker switches to the fallback: one activation
            self.primary_picked = False
            self.plane.failover_activated(self.idx)
        return self.fallback(headers, now)


def _statuses(ranges: list[str]) -> list[int]:
    out = []
    for text in ranges:
        low, _, high = text.partition("-")
        out += range(int(low), int(high or low) + 1)
    return out


class StatusReplay(Retry):
    """``errors``: one replay of the request to the fallback, armed by ``arm`` when the primary was picked."""

    def __init__(self, name: str, errors: dict[str, Any]) -> None:
        super().__init__(f"{name}@failover", {"max_retries": 1, "retry_interval_ms": 0, "backoff": "constant",
                                              "retry_on_statuses": _statuses(errors["status"]),
                                              "replay_buffer_bytes": errors["max_body_bytes"]}, None)

    def arm(self, ex: Exchange, failover: Failover) -> None:
        """Keep ``ex``'s body (what arrived before the pick included) for a replay when ``failover`` just picked
        its primary, unless a retry middleware already owns the exchange's retry path."""
        if ex.retry is None and failover.primary_picked:
            self.keep_from_now(ex)

    def again(self, ex: Exchange, reached: bool) -> bool:
        if ex.attempts or (ex.req_has_body and ex.replay is None):
            return False
        ex.attempts = 1
        return True
