"""The master's half of outlier detection: once per node, every ``interval``, per load balancer with
``outlier_detection``.

Each sweep reads the plane's per-backend counters (what every worker counted), takes the requests and failures
(5xx and no answer) each backend had since the last sweep, and ejects the backends whose success rate is below
mean − ``stdev_factor`` × stdev (``ejection.success_rate_outliers``: only backends with ``request_volume``
requests count, and only when ``minimum_hosts`` of them do). Ejections go through the same locked plane call
the workers use, so ``max_ejection_percent`` holds across both. The sweep then lowers by one the ejection
multiplier of every backend that stayed in for the whole interval (Envoy's decay).

Reloads (``reconcile.ServiceProbes``): a service whose servers and outlier settings are unchanged keeps its
task and its last counts; ejections live on the plane, keyed by the backend's slot, so they survive any reload
that keeps the backend.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ...shared.plane.ejection import outlier_policy, success_rate_outliers
from .reconcile import ServiceProbes


def _requests_and_failures(counts: dict[str, int]) -> tuple[int, int]:
    classes = ("1xx", "2xx", "3xx", "4xx", "5xx", "err")
    return sum(counts.get(c, 0) for c in classes), counts.get("5xx", 0) + counts.get("err", 0)


class OutlierSweeper(ServiceProbes):
    KEY = "outlier_detection"
    SESSION = False

    def __init__(self, plane: Any) -> None:
        super().__init__(plane)
        self.service_slots: dict[str, int] = {}

    def update(self, compiled: dict[str, Any]) -> None:
        self.service_slots = compiled["slots"]["services"]
        super().update(compiled)

    def _new_state(self, url: str) -> None:
        return None

    def _publish(self, idx: int, state: None) -> None:
        """Nothing: ejections are on the plane already."""

    def _unprobed(self, idx: int) -> None:
        """Nothing: a backend without outlier detection keeps what passive health wrote."""

    def _counts(self, peers: list[int]) -> dict[int, tuple[int, int]]:
        backends = self.plane.totals()["backends"]
        return {b: _requests_and_failures(backends.get(b, {})) for b in peers}

    async def _run(self, service: str, cfg: dict[str, Any], servers: list[tuple[str, int]]) -> None:
        peers = [idx for _url, idx in servers]
        policy = outlier_policy(cfg)
        rate = cfg["success_rate"]
        last = self._counts(peers)
        while True:
            await asyncio.sleep(cfg["interval"])
            slot = self.service_slots[service]
            counts = self._counts(peers)
            now = time.monotonic()
            if rate["enabled"]:
                samples = {b: (n - last[b][0], bad - last[b][1]) for b, (n, bad) in counts.items()}
                for b in success_rate_outliers(samples, rate["minimum_hosts"], rate["request_volume"],
                                               rate["stdev_factor"]):
                    self.plane.outlier_eject(slot, b, peers, now, "success_rate", policy)
            self.plane.outlier_decay(slot, peers, now, cfg["interval"])
            last = counts
