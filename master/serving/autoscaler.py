"""Knative's KPA decision for one revision, as pure code over an injected clock (``now`` arguments).

``Decider.record(now, concurrency)`` adds a sample of the revision's node-wide concurrency (requests in flight on
its instances plus requests waiting in the activator) to 1 s buckets; ``Decider.decide(now, ready)`` is the
decision of ``pkg/autoscaler/scaling/autoscaler.go`` ``Scale()`` (research §1.2), with the scale-to-zero rule of
``kpa/scaler.go`` and the revision's bounds applied after it.

Invariants:

* window averages divide by the buckets since the first sample (capped at the window), so a young revision is
  not under-estimated; a window with no sample since then averages to 0.
* while panicking the desired count never decreases, and panic lasts a stable window after its last trigger;
  a decider created for a revision that already runs more than one instance starts in panic with that count,
  so a restart of the gateway does not scale a loaded revision down.
* scale-up is at most ``max_scale_up_rate`` x ready and scale-down at most ready / ``max_scale_down_rate`` per
  decision; ``scale_down_delay`` keeps the maximum of the decisions over that delay.
* the last instance goes only when the revision saw no request for ``stable_window + scale_to_zero_grace``;
  ``min_scale`` and ``max_scale`` bound every decision; ``activation_scale`` is the least count from zero.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

BUCKET = 1.0     # seconds per bucket (Knative's BucketSize)


@dataclass(frozen=True)
class Settings:
    target: float                 # concurrent requests per instance wanted
    stable_window: float
    panic_window: float
    panic_threshold: float        # a ratio: 2.0 = 200 %
    max_scale_up_rate: float
    max_scale_down_rate: float
    scale_down_delay: float
    scale_to_zero_grace: float
    min_scale: int
    max_scale: int
    initial_scale: int
    activation_scale: int

    @classmethod
    def of(cls, serving: dict[str, Any], revision: dict[str, Any]) -> Settings:
        """From a normalized ``serving`` table and one of its revisions (Knative's ``ResolveMetricTarget``)."""
        cc = revision["container_concurrency"]
        total = cc if cc > 0 else 100.0
        target = serving["target"] if serving["target"] is not None else total * serving["target_utilization"]
        if cc > 0:
            target = min(target, cc)
        return cls(target=max(0.01, target), stable_window=serving["stable_window"],
                   panic_window=max(BUCKET, serving["stable_window"] * serving["panic_window_percentage"] / 100),
                   panic_threshold=serving["panic_threshold_percentage"] / 100,
                   max_scale_up_rate=serving["max_scale_up_rate"], max_scale_down_rate=serving["max_scale_down_rate"],
                   scale_down_delay=serving["scale_down_delay"], scale_to_zero_grace=serving["scale_to_zero_grace"],
                   min_scale=revision["min_scale"], max_scale=revision["max_scale"],
                   initial_scale=revision["initial_scale"], activation_scale=revision["activation_scale"])


@dataclass(frozen=True)
class Decision:
    at: float
    desired: int
    ready: int
    stable: float                 # the stable window's average concurrency
    panic: float                  # the panic window's
    panicking: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "desired": self.desired, "ready": self.ready, "stable": round(self.stable, 3),
                "panic": round(self.panic, 3), "panicking": self.panicking, "reason": self.reason}


class Decider:
    def __init__(self, settings: Settings, now: float, current: int = 0) -> None:
        self.settings = settings
        self.buckets: deque[tuple[int, float, int]] = deque()    # (bucket number, sum of samples, samples)
        self.first: int | None = None                            # the bucket of the first sample
        self.last_active = now                                   # the last time a request was seen (or start)
        self.panic_time: float | None = None
        self.max_panic = 0
        self.delayed: deque[tuple[float, int]] = deque()         # (time, desired) over scale_down_delay
        if current > 1:                                          # a restart under load: no scale-down (#4795)
            self.panic_time, self.max_panic = now, current

    # -- samples
    def record(self, now: float, concurrency: float) -> None:
        b = int(now // BUCKET)
        if self.first is None:
            self.first = b
        if self.buckets and self.buckets[-1][0] == b:
            _, total, n = self.buckets[-1]
            self.buckets[-1] = (b, total + concurrency, n + 1)
        else:
            self.buckets.append((b, concurrency, 1))
        if concurrency > 0:
            self.last_active = now
        horizon = b - int(self.settings.stable_window // BUCKET)
        while self.buckets and self.buckets[0][0] <= horizon:
            self.buckets.popleft()

    def average(self, now: float, window: float) -> float | None:
        """The window's average of the buckets' averages; None before the first sample."""
        if self.first is None:
            return None
        b = int(now // BUCKET)
        span = min(int(window // BUCKET), b - self.first + 1)
        if span <= 0:
            return None
        total = sum(s / n for k, s, n in self.buckets if b - span < k <= b)
        return total / span

    # -- the decision
    def decide(self, now: float, ready: int, wanted: int | None = None) -> Decision:
        """The decision at ``now`` for ``ready`` instances, of which ``wanted`` (default ``ready``) are asked
        for: instances still starting count as wanted, so they are not scaled away within the grace."""
        s = self.settings
        wanted = ready if wanted is None else wanted
        stable = self.average(now, s.stable_window)
        panic = self.average(now, s.panic_window)
        if stable is None or panic is None:
            return Decision(now, -1, ready, 0.0, 0.0, self.panic_time is not None, "no data: scale unchanged")
        pods = max(1, ready)
        max_up = math.ceil(s.max_scale_up_rate * pods)
        max_down = math.floor(pods / s.max_scale_down_rate)
        dspc, dppc = math.ceil(stable / s.target), math.ceil(panic / s.target)
        d_stable, d_panic = min(max(dspc, max_down), max_up), min(max(dppc, max_down), max_up)
        reasons = [f"stable {stable:.2f} / target {s.target:g} -> {dspc}"]
        if s.activation_scale > 1:
            if dspc > 0:
                d_stable = max(d_stable, s.activation_scale)
            if dppc > 0:
                d_panic = max(d_panic, s.activation_scale)
        if dppc / pods >= s.panic_threshold:
            if self.panic_time is None:
                reasons.append(f"panic: {dppc} wanted by the panic window is >= {s.panic_threshold:g} x {pods}")
            self.panic_time = now
        elif self.panic_time is not None and self.panic_time + s.stable_window < now:
            self.panic_time, self.max_panic = None, 0
            reasons.append("panic over")
        desired = d_stable
        if self.panic_time is not None:
            desired = self.max_panic = max(self.max_panic, d_stable, d_panic)
            reasons.append(f"panicking: keep the panic maximum {desired}")
        if s.scale_down_delay > 0:
            self.delayed.append((now, desired))
            while self.delayed and self.delayed[0][0] <= now - s.scale_down_delay:
                self.delayed.popleft()
            held = max(d for _, d in self.delayed)
            if held > desired:
                reasons.append(f"scale_down_delay holds {held}")
                desired = held
        if desired == 0 and max(ready, wanted) > 0:
            idle = now - self.last_active
            if idle < s.stable_window + s.scale_to_zero_grace:
                desired = 1
                reasons.append(f"idle {idle:.1f}s < stable_window + scale_to_zero_grace: keep 1")
            else:
                reasons.append(f"idle {idle:.1f}s: scale to zero")
        bounded = min(max(desired, s.min_scale), s.max_scale)
        if bounded != desired:
            reasons.append(f"bounded by min_scale {s.min_scale} / max_scale {s.max_scale}")
        return Decision(now, bounded, ready, stable, panic, self.panic_time is not None, "; ".join(reasons))

    def wake(self, now: float) -> int:
        """The count for a revision with requests waiting and no instance (the activator's poke): at once,
        without waiting for the next tick."""
        self.last_active = now
        s = self.settings
        return min(max(1, s.activation_scale, s.min_scale), s.max_scale)
