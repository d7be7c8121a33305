"""What a load balancer's outlier settings mean for ejections, and the success-rate statistics (Envoy's model).

Two sources compile to one ``EjectionPolicy``:

* ``outlier_detection`` (Envoy's ``outlier_detection.proto``): an ejection lasts ``base_ejection_time`` times the
  number of times the backend was ejected (less one per ``interval`` it then stayed in), capped by
  ``max_ejection_time``, plus up to ``max_ejection_time_jitter``; at most ``max_ejection_percent`` of the
  service's backends are out at once.
* ``passive_health`` (the older keys, when ``outlier_detection`` is not given): a fixed ``cooldown`` and no cap
  on how many backends may be out, exactly as before.

Invariant of ``limit``: a service with more than one backend may always eject one of them (unless the percent is
0), and a service never ejects its last backend unless the percent is 100 (``passive_health``, or said so).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

_RNG = random.Random(random.SystemRandom().getrandbits(64))


@dataclass(frozen=True)
class EjectionPolicy:
    base: float             # seconds of the first ejection
    cap: float              # longest ejection (before jitter)
    jitter: float           # up to this many seconds added at random
    max_percent: int        # of the service's backends out at once
    interval: float         # the multiplier drops by one per interval un-ejected (master sweep)

    def limit(self, backends: int) -> int:
        """How many of ``backends`` may be ejected at the same time."""
        n = backends * self.max_percent // 100
        return 1 if n == 0 and backends > 1 and self.max_percent > 0 else n

    def draw_jitter(self) -> float:
        return _RNG.uniform(0.0, self.jitter) if self.jitter > 0 else 0.0


def policy_of(lb: dict[str, Any]) -> EjectionPolicy:
    """The policy of a normalized ``load_balancer`` table."""
    od = lb["outlier_detection"]
    if od is None:
        cooldown = lb["passive_health"]["cooldown"]
        return EjectionPolicy(cooldown, cooldown, 0.0, 100, math.inf)
    return outlier_policy(od)


def outlier_policy(od: dict[str, Any]) -> EjectionPolicy:
    """The policy of a normalized ``outlier_detection`` table."""
    return EjectionPolicy(od["base_ejection_time"], od["max_ejection_time"], od["max_ejection_time_jitter"],
                          od["max_ejection_percent"], od["interval"])


def success_rate_outliers(samples: dict[int, tuple[int, int]], minimum_hosts: int, request_volume: int,
                          stdev_factor: float) -> list[int]:
    """Backends whose success rate over the last interval is below mean − ``stdev_factor`` × stdev, among those
    with at least ``request_volume`` requests (``samples``: backend → (requests, failures)); none unless at
    least ``minimum_hosts`` backends have that volume."""
    rates = {b: 100.0 * (n - bad) / n for b, (n, bad) in samples.items() if n >= request_volume and n > 0}
    if len(rates) < max(1, minimum_hosts):
        return []
    mean = sum(rates.values()) / len(rates)
    stdev = math.sqrt(sum((r - mean) ** 2 for r in rates.values()) / len(rates))
    threshold = mean - stdev_factor * stdev
    return sorted(b for b, r in rates.items() if r < threshold)
