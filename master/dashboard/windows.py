"""Rolling one-minute traffic windows per router and per service, kept in the master for the dashboard.

The plane only holds monotonic node-wide totals; a rate or a percentile "over the last minute" needs those totals
remembered. A sampler reads the plane once a second and keeps the last 61 samples, so nothing is added to the
request path. It runs only while a dashboard is in use (a page was asked for in the last ``IDLE_S``): reading the
plane costs a few milliseconds, which an unwatched node should not pay every second.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...shared.plane.observations import BOUNDS, CLASS_NAMES, NB

if TYPE_CHECKING:
    from ..gateway import Gateway

WINDOW_S = 60
IDLE_S = 120.0


@dataclass(frozen=True)
class Sample:
    """One object's totals at one instant: requests by status class and the duration histogram."""

    classes: tuple[int, ...]
    buckets: tuple[int, ...]


@dataclass(frozen=True)
class Figures:
    """What the dashboard shows for one router or service over the window."""

    rate: float                 # requests per second
    pct_4xx: float
    pct_5xx: float
    p50: float | None           # seconds; None without a request in the window
    p99: float | None
    series: tuple[float, ...]   # requests per second, one point per second, oldest first
    last_request: float | None  # unix time the count last grew, seen by the sampler


def quantile(buckets: list[int], q: float) -> float | None:
    """The q-quantile of a non-cumulative histogram over ``BOUNDS``, interpolated linearly inside its bucket
    (as Prometheus' histogram_quantile does); the overflow bucket answers its lower bound."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i >= len(BOUNDS):
                return BOUNDS[-1]
            low = BOUNDS[i - 1] if i else 0.0
            return low + (BOUNDS[i] - low) * (rank - seen) / n
        seen += n
    return BOUNDS[-1]


class Windows:
    """Samples of every router and service by name; a name's history survives reloads while it keeps existing."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.samples: deque[tuple[float, dict[tuple[str, str], Sample]]] = deque(maxlen=WINDOW_S + 1)
        self.last_request: dict[tuple[str, str], float] = {}
        self.wanted_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def want(self) -> None:
        """A dashboard page was asked for: keep sampling (start the sampler if it is idle)."""
        self.wanted_at = time.monotonic()
        if self._task is None or self._task.done():
            self.sample()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while time.monotonic() - self.wanted_at < IDLE_S:
            await asyncio.sleep(1.0 - time.time() % 1.0)
            self.sample()
        self.samples.clear()        # a gap would make the next rates wrong

    def sample(self) -> None:
        plane = self.gateway.plane()
        slots = self.gateway.compiled().get("slots") or {}
        if plane is None or not slots:
            return
        counts, obs = plane.totals(), plane.observation_totals()
        now = time.time()
        prev = self.samples[-1][1] if self.samples else {}
        taken: dict[tuple[str, str], Sample] = {}
        for kind, durations in (("routers", "router_durations"), ("services", "service_durations")):
            for name, idx in slots.get(kind, {}).items():
                row = counts[kind].get(idx)
                hist = obs[durations].get(idx)
                classes = tuple(row[c] for c in CLASS_NAMES) if row else (0,) * len(CLASS_NAMES)
                buckets = tuple(hist[0]) if hist else (0,) * NB
                key = (kind, name)
                taken[key] = Sample(classes, buckets)
                old = prev.get(key)
                if old is not None and sum(classes) > sum(old.classes):
                    self.last_request[key] = now
        self.samples.append((now, taken))

    def figures(self, kind: str, name: str) -> Figures:
        """The window's figures for one object (zeros until two samples exist)."""
        key = (kind, name)
        points = [(t, s[key]) for t, s in self.samples if key in s]
        if len(points) < 2:
            return Figures(0.0, 0.0, 0.0, None, None, (), self.last_request.get(key))
        (t0, first), (t1, last) = points[0], points[-1]
        classes = [max(0, b - a) for a, b in zip(first.classes, last.classes)]
        buckets = [max(0, b - a) for a, b in zip(first.buckets, last.buckets)]
        total = sum(classes)
        series = tuple(max(0, sum(b.classes) - sum(a.classes)) / max(tb - ta, 1e-3)
                       for (ta, a), (tb, b) in zip(points, points[1:]))
        return Figures(rate=total / max(t1 - t0, 1e-3),
                       pct_4xx=100.0 * classes[CLASS_NAMES.index("4xx")] / total if total else 0.0,
                       pct_5xx=100.0 * classes[CLASS_NAMES.index("5xx")] / total if total else 0.0,
                       p50=quantile(buckets, 0.5), p99=quantile(buckets, 0.99), series=series,
                       last_request=self.last_request.get(key))
