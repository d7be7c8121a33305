"""Gradual rollout of a served service from one revision to another, in steps gated on the new revision's health.

Beyond Knative (which shifts traffic by time only): every ``step_interval`` the new revision's requests *during
that step* are judged, from the plane's per-service counters and duration histogram (deltas since the step
began): more than ``max_error_rate`` of them answered 5xx or failed, or their p99 above ``max_p99``, rolls all
traffic back to the old revision and records why; otherwise the new revision gets ``step_percent`` more, until
100 % (promoted). A step with fewer than ``min_requests`` requests to the new revision is extended, not judged.

Pure code over an injected clock and samples, like the decider: ``Rollout.advance(now, sample)`` returns whether
the split changed. Invariants: the percent only moves by ``step_percent`` up or to 0 (a rollback), a finished
rollout (``promoted`` or ``rolled_back``) never moves again, and every step's verdict is kept in ``steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...shared.plane.observations import BOUNDS


@dataclass(frozen=True)
class Sample:
    """Cumulative figures of the new revision: requests answered, of which failed (5xx or no response), and the
    duration histogram's buckets (non-cumulative, the observations' BOUNDS plus overflow)."""

    requests: int
    failed: int
    buckets: tuple[int, ...]


def p99(buckets: list[int]) -> float:
    """The upper bound of the bucket holding the 99th percentile (inf in the overflow bucket; 0 without data)."""
    total = sum(buckets)
    if not total:
        return 0.0
    rank, seen = math.ceil(total * 0.99), 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return BOUNDS[i] if i < len(BOUNDS) else math.inf
    return math.inf


@dataclass
class Rollout:
    settings: dict[str, Any]
    started: float
    base: Sample
    percent: int = 0
    state: str = "progressing"          # progressing | promoted | rolled_back
    reason: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.percent = min(100, self.settings["step_percent"])

    def split(self) -> dict[str, int]:
        """Percent of the service's traffic by revision."""
        s = self.settings
        return {s["from"]: 100 - self.percent, s["to"]: self.percent}

    def advance(self, now: float, sample: Sample) -> bool:
        s = self.settings
        if self.state != "progressing" or now - self.started < s["step_interval"]:
            return False
        requests = sample.requests - self.base.requests
        if requests < s["min_requests"]:
            return False                 # not enough traffic to judge: the step goes on
        failed = sample.failed - self.base.failed
        latency = p99([a - b for a, b in zip(sample.buckets, self.base.buckets, strict=True)])
        rate = failed / requests
        step = {"at": round(now, 3), "percent": self.percent, "requests": requests, "error_rate": round(rate, 4),
                "p99_s": latency}
        if rate > s["max_error_rate"]:
            why = f"error rate {rate:.1%} > max_error_rate {s['max_error_rate']:.1%} at {self.percent}%"
        elif s["max_p99"] is not None and latency > s["max_p99"]:
            why = f"p99 {latency:g}s > max_p99 {s['max_p99']:g}s at {self.percent}%"
        else:
            why = ""
        if why:
            self.state, self.reason, self.percent = "rolled_back", why, 0
            step["verdict"] = "rolled back: " + why
        else:
            self.percent = min(100, self.percent + s["step_percent"])
            step["verdict"] = f"healthy: {self.percent}%"
            if self.percent == 100:
                self.state, self.reason = "promoted", f"{s['to']} takes all traffic"
        self.steps.append(step)
        self.started, self.base = now, sample
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.settings["from"], "to": self.settings["to"], "percent": self.percent,
                "state": self.state, "reason": self.reason, "steps": list(self.steps)}
