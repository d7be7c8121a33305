"""Active health checks, run once per node in the master and published to every worker on the plane.

One asyncio task per service that has ``load_balancer.health_check``; each round it probes every server of
the service concurrently (aiohttp, one shared session), then sleeps ``interval``. A backend goes down after
``unhealthy_threshold`` consecutive failed probes and comes back after ``healthy_threshold`` consecutive
good ones; the master writes that on the shared-memory plane (``plane.set_healthy``), where every worker's
balancer reads it. A probe fails on a connection error, on ``timeout``, or on a status outside
``expected_status``.

Reloads (``update``): a service whose servers and check settings are unchanged keeps its task; any other
service's task is cancelled and awaited (no task outlives its service), and a backend that is still there
keeps its counters and its up/down state, because state is keyed by the backend's plane key
(``service|url``), not by the task. A backend that no longer has a check is marked healthy again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..shared import log as gwlog
from ..shared.plane import Plane
from .generations import backend_key
from .probing import ServiceProbes

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
    def __init__(self, plane: Plane) -> None:
        super().__init__()
        self.plane = plane
        self.states: dict[str, BackendState] = {}          # backend key -> state
        self.probes = 0

    def update(self, compiled: dict[str, Any]) -> None:
        """Make the running checks match a generation (see the module docstring)."""
        services = compiled["config"].get("services", {})
        slots = compiled["slots"]["backends"]
        wanted: dict[str, Any] = {}
        for name, svc in services.items():
            lb = svc["load_balancer"]
            hc = lb.get("health_check")
            if not hc:
                continue
            servers = [(s["url"], slots[backend_key(name, s["url"])]) for s in lb["servers"]]
            wanted[name] = (hc, servers)
        for name in list(self.tasks):
            if self.tasks[name][0] != wanted.get(name):
                self.tasks.pop(name)[1].cancel()
        checked = {backend_key(n, url) for n, (_hc, servers) in wanted.items() for url, _idx in servers}
        for key in list(self.states):
            if key not in checked:
                del self.states[key]
        # Backends that lost their check (or are new) start healthy: the master is the only writer of the flag.
        for name, svc in services.items():
            for s in svc["load_balancer"]["servers"]:
                key = backend_key(name, s["url"])
                if key not in checked:
                    self.plane.set_healthy(slots[key], True)
        if self.session is None and wanted:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0),
                                                 auto_decompress=False)
        loop = asyncio.get_running_loop()
        for name, settings in wanted.items():
            if name not in self.tasks:
                hc, servers = settings
                for url, idx in servers:
                    state = self.states.setdefault(backend_key(name, url), BackendState())
                    self.plane.set_healthy(idx, state.healthy)
                self.tasks[name] = (settings, loop.create_task(self._run(name, hc, servers),
                                                               name=f"healthcheck:{name}"))

    def running(self) -> list[str]:
        return sorted(self.tasks)

    def snapshot(self) -> dict[str, Any]:
        return {key: {"healthy": s.healthy, "failures": s.failures, "successes": s.successes,
                      "last_error": s.last_error, "last_probe": s.last_probe}
                for key, s in sorted(self.states.items())}

    async def _probe(self, service: str, hc: dict[str, Any], url: str, idx: int) -> None:
        assert self.session is not None
        lo, hi = parse_status_range(str(hc.get("expected_status") or "200-399"))
        target = url.replace("h2c://", "http://", 1) + hc["path"]
        headers = dict(hc.get("headers") or {})
        if hc.get("hostname"):
            headers["Host"] = hc["hostname"]
        error = None
        try:
            async with self.session.request(hc.get("method") or "GET", target, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=hc["timeout"]),
                                            allow_redirects=False) as resp:
                if not lo <= resp.status <= hi:
                    error = f"status {resp.status}"
        except TimeoutError:
            error = f"timeout after {hc['timeout']}s"
        except aiohttp.ClientError as e:
            error = f"{type(e).__name__}: {e}"
        self.probes += 1
        state = self.states.setdefault(backend_key(service, url), BackendState())
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
