"""Gradual rollout of a served service from one revision to another, in steps gated on the new revision's health.

Beyond Knative (which shifts traffic by time only): the new revision (``to``) starts at ``step_percent`` of the
service's traffic and the old one (``from``) has the rest. Once ``step_interval`` has passed, the new revision's
requests *during that step* are judged, from the plane's per-service counters and duration histogram (deltas
since the step began): more than ``max_error_rate`` of them answered 5xx or got no answer, or their p99 above
``max_p99``, rolls all traffic back to the old revision and records why; otherwise the new revision gets
``step_percent`` more, until 100 % (promoted). A step with fewer than ``min_requests`` requests to the new
revision is extended (judged at the next check with what it has then), not judged on too little.

Pure code over an injected clock and samples, like the decider: ``due(now)`` says whether the step is over,
``advance(now, sample)`` judges it and returns whether the split changed. Invariants: the percent only moves up by
``step_percent`` (capped at 100) or to 0 (a rollback); a finished rollout (``promoted`` or ``rolled_back``) never
moves again; every judged step's figures and verdict are kept in ``steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...shared.plane.observations import BOUNDS

PROGRESSING, PROMOTED, ROLLED_BACK = "progressing", "promoted", "rolled_back"


@dataclass(frozen=True)
class Sample:
    """Cumulative figures of the new revision: requests answered, of which failed (5xx or no response), and the
    duration histogram's buckets (non-cumulative: the observations' BOUNDS plus the overflow bucket)."""

    requests: int
    failed: int
    buckets: tuple[int, ...]


def p99(buckets: list[int]) -> float:
    """The 99th percentile of a histogram, interpolated linearly inside its bucket like Prometheus's
    ``histogram_quantile`` (the first bucket starts at 0); inf when it falls in the overflow bucket (above the
    last bound, 10 s), 0 without data."""
    total = sum(buckets)
    if not total:
        return 0.0
    rank, seen = total * 0.99, 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i >= len(BOUNDS):
                return math.inf
            low = BOUNDS[i - 1] if i else 0.0
            return low + (BOUNDS[i] - low) * (rank - seen) / n
        seen += n
    return math.inf


def opening_split(settings: dict[str, Any]) -> dict[str, int]:
    """The split a rollout starts with (also what a generation compiled before the controller saw it uses)."""
    return {settings["from"]: 100 - settings["step_percent"], settings["to"]: settings["step_percent"]}


def identity(serving: dict[str, Any]) -> tuple[Any, ...] | None:
    """What a reload must keep for a rollout to keep its progress: its own settings and the executor settings of
    both revisions (a revision given a new command or image is new code: its rollout starts over). Compared with
``==`` only (it holds dicts)."""
    settings = serving["rollout"]
    if settings is None:
        return None
    revisions = serving["revisions"]
    return (settings, *((revisions[r]["executor"], revisions[r][revisions[r]["executor"]])
                        for r in (settings["from"], settings["to"])))


@dataclass
class Rollout:
    settings: dict[str, Any]            # the normalized ``rollout`` table
    key: tuple[Any, ...]                # ``identity`` of the served service it was started for
    started: float                      # when the current step began
    base: Sample                        # the new revision's figures then
    percent: int = 0
    state: str = PROGRESSING
    reason: str = ""
    waiting: str = ""                   # why the current step was extended, if it was
    steps: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.percent = self.settings["step_percent"]

    def split(self) -> dict[str, int]:
        """Percent of the service's traffic by revision."""
        return {self.settings["from"]: 100 - self.percent, self.settings["to"]: self.percent}

    def due(self, now: float) -> bool:
        """Whether the current step is over and must be judged (never, once finished)."""
        return self.state == PROGRESSING and now - self.started >= self.settings["step_interval"]

    def advance(self, now: float, sample: Sample) -> bool:
        """Judge the step that ends now on ``sample`` minus its base; True when the split changed."""
        if not self.due(now):
            return False
        s = self.settings
        requests = sample.requests - self.base.requests
        if requests < s["min_requests"]:
            self.waiting = f"step extended: {requests} request(s) to {s['to']}, min_requests {s['min_requests']}"
            return False
        rate = (sample.failed - self.base.failed) / requests
        latency = p99([a - b for a, b in zip(sample.buckets, self.base.buckets, strict=True)])
        if rate > s["max_error_rate"]:
            why = f"error rate {rate:.1%} > max_error_rate {s['max_error_rate']:.1%}"
        elif s["max_p99"] is not None and latency > s["max_p99"]:
            why = f"p99 {latency:.3f}s > max_p99 {s['max_p99']:g}s"
        else:
            why = ""
        step = {"at": round(now, 3), "percent": self.percent, "requests": requests, "error_rate": round(rate, 4),
                "p99_s": round(latency, 4) if math.isfinite(latency) else None}
        if why:
            self.reason = f"{why} at {self.percent}%: all traffic back to {s['from']}"
            self.state, self.percent = ROLLED_BACK, 0
            step["verdict"] = "rolled back: " + why
        else:
            self.percent = min(100, self.percent + s["step_percent"])
            step["verdict"] = f"healthy: {s['to']} to {self.percent}%"
            if self.percent == 100:
                self.state, self.reason = PROMOTED, f"{s['to']} takes all traffic"
        self.steps.append(step)
        self.started, self.base, self.waiting = now, sample, ""
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.settings["from"], "to": self.settings["to"], "state": self.state,
                "percent": self.percent, "split": self.split(), "reason": self.reason, "waiting": self.waiting,
                "steps": list(self.steps)}
