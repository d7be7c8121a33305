"""Active health checks, run once per node in the master and published to every worker on the plane.

One asyncio task per service that has ``load_balancer.health_check``; each round it probes every server of
the service concurrently (aiohttp: one shared session, and one per unix socket or vsock server), then sleeps
``interval``. A backend goes down after ``unhealthy_threshold`` consecutive failed probes and comes back after
``healthy_threshold`` consecutive good ones; the master writes that on the shared-memory plane
(``plane.set_healthy``), where every worker's balancer reads it. A probe fails on a connection error, on
``timeout``, or on a status outside ``expected_status``.

Reloads (``update``, the loop of ``reconcile.ServiceProbes``): a service whose servers and check settings are
unchanged keeps its task; any other service's task is cancelled and awaited (no task outlives its service),
and a backend that is still there keeps its counters and its up/down state, because state is keyed by the
backend's plane key (``service|url``), not by the task. A backend that no longer has a check is marked
healthy again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from ...shared import log as gwlog
from .reconcile import ServiceProbes

log = gwlog.get("master.health")


@dataclass
class BackendState:
    healthy: bool = True
    failures: int = 0
    successes: int = 0
    last_error: str | None = None
    last_probe: float | None = None     # wall clock of the last probe


def parse_status_range(spec: str) -> tuple[int, int]:
    """``"200-399"`` → (200, 399); ``"204"`` → (204, 204)."""
    lo, _, hi = spec.partition("-")
    return int(lo), int(hi or lo)


class HealthChecker(ServiceProbes):
    KEY = "health_check"
    DECOMPRESS = False

    def _new_state(self, url: str) -> BackendState:
        return BackendState()

    def _publish(self, idx: int, state: BackendState) -> None:
        self.plane.set_healthy(idx, state.healthy)

    def _unprobed(self, idx: int) -> None:
        self.plane.set_healthy(idx, True)      # a backend that lost its check (or is new) starts healthy

    def snapshot(self) -> dict[str, Any]:
        return {key: {"healthy": s.healthy, "failures": s.failures, "successes": s.successes,
                      "last_error": s.last_error, "last_probe": s.last_probe}
                for key, s in sorted(self.states.items())}

    async def _probe(self, service: str, hc: dict[str, Any], url: str, idx: int) -> None:
        lo, hi = parse_status_range(str(hc.get("expected_status") or "200-399"))
        session, target = self._target(url, hc["path"])
        headers = dict(hc.get("headers") or {})
        if hc.get("hostname"):
            headers["Host"] = hc["hostname"]
        error = None
        try:
            async with session.request(hc.get("method") or "GET", target, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=hc["timeout"]),
                                            allow_redirects=False) as resp:
                if not lo <= resp.status <= hi:
                    error = f"status {resp.status}"
        except TimeoutError:
            error = f"timeout after {hc['timeout']}s"
        except aiohttp.ClientError as e:
            error = f"{type(e).__name__}: {e}"
        state = self._state(service, url)
        state.last_probe = time.time()
        state.last_error = error
        if error is None:
            state.successes += 1
            state.failures = 0
            if not state.healthy and state.successes >= hc["healthy_threshold"]:
                state.healthy = True
                self.plane.set_healthy(idx, True)
                log.info("backend healthy again", extra={"fields": {"service": service, "server": url}})
        else:
            state.failures += 1
            state.successes = 0
            if state.healthy and state.failures >= hc["unhealthy_threshold"]:
                state.healthy = False
                self.plane.set_healthy(idx, False)
                log.warning(f"backend unhealthy: {error}", extra={"fields": {"service": service, "server": url}})
