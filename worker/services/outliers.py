"""Consecutive-failure outlier detection for one load balancer: the workers' half of Envoy's model.

Every answer of a backend is classified where the exchange sees its response head (``exchange.response_head``)
or its failure (``exchange.failed``): a status in ``failing`` (or no answer at all) counts against the backend's
streaks on the plane, anything else ends them (``Backend.passive_success``). A streak that reaches its threshold
asks the plane to eject the backend, under the service's lock, within the policy's limits (``ejection.py``).
The success-rate half runs once per node in the master (``master/probes/outliers.py``).

Two configurations compile to this one object:

* ``outlier_detection``: ``consecutive_5xx`` counts every 5xx and no-answer, ``consecutive_gateway_failure``
  only 502, 503, 504 and no-answer (a 500 ends that streak); ejections grow with the multiplier and are capped.
* ``passive_health`` (when ``outlier_detection`` is not given): ``max_failures`` counts no-answers and the
  ``statuses`` listed; a fixed ``cooldown``; any number of backends may be out (as before).

Invariant: a service without either (``max_failures = 0`` and no ``outlier_detection``) gets no ``Outliers``
object, and the exchange does nothing per response for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...shared.plane.ejection import EjectionPolicy, policy_of

if TYPE_CHECKING:
    from ...shared.plane import Plane
    from ..runtime import Backend

GATEWAY_STATUSES = frozenset((502, 503, 504))
NO_ANSWER = 0                                # the status of an attempt that got no response head


class Outliers:
    __slots__ = ("failing", "gateway_threshold", "peers", "plane", "policy", "service_idx", "threshold",
                 "threshold_reason")

    def __init__(self, lb: dict[str, Any], service_idx: int, peers: list[int], plane: Plane) -> None:
        od = lb["outlier_detection"]
        self.policy: EjectionPolicy = policy_of(lb)
        self.service_idx = service_idx
        self.peers = peers
        self.plane = plane
        if od is None:
            passive = lb["passive_health"]
            self.threshold, self.gateway_threshold = passive["max_failures"], 0
            self.threshold_reason = "passive_health"
            self.failing = frozenset(passive["statuses"])
        else:
            self.threshold, self.gateway_threshold = od["consecutive_5xx"], od["consecutive_gateway_failure"]
            self.threshold_reason = "consecutive_5xx"
            self.failing = frozenset(range(500, 600)) if self.threshold else GATEWAY_STATUSES

    @classmethod
    def of(cls, lb: dict[str, Any], service_idx: int, peers: list[int], plane: Plane) -> Outliers | None:
        """The detection a load balancer asks for, or None when it counts nothing."""
        od = lb["outlier_detection"]
        counting = (lb["passive_health"]["max_failures"] if od is None
                    else od["consecutive_5xx"] or od["consecutive_gateway_failure"])
        return cls(lb, service_idx, peers, plane) if counting else None

    @property
    def resets_both(self) -> bool:
        """Whether a good answer must end the gateway streak too (``Backend.passive_success``)."""
        return self.gateway_threshold > 0

    def failure(self, backend: Backend, status: int, now: float) -> None:
        """``backend`` answered ``status`` (in ``failing``) or nothing (``NO_ANSWER``)."""
        plane, b = self.plane, backend.idx
        streak, gateway_streak = plane.outlier_failure(b, status == NO_ANSWER or status in GATEWAY_STATUSES)
        if self.threshold and streak >= self.threshold:
            reason = self.threshold_reason
        elif self.gateway_threshold and gateway_streak >= self.gateway_threshold:
            reason = "consecutive_gateway_failure"
        else:
            return
        plane.outlier_restart(b)
        plane.outlier_eject(self.service_idx, b, self.peers, now, reason, self.policy)
