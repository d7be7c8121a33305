"""Model (agent) health probes, run once per node in the master: ``load_balancer.agent_health``.

Each round, every server of a service with ``agent_health`` gets ``GET <server><path>``; its JSON health
document ``{"status": "loading"|"ready"|"busy"|"error", "model": ..., "queue_depth": ...}`` (any 2xx-5xx
status code; the document decides) maps to the spec's states (§11.5):
- ``ready`` is a success: after ``success_threshold`` consecutive ones the backend is ``ready``;
- ``loading``, ``busy`` and ``error`` are taken as reported (they reset the success count);
- no answer, a timeout, or no parseable document is a failure: ``error`` until ``failure_threshold``
  consecutive failures, then ``unreachable``.
A backend starts ``unreachable`` (the spec's default) and is probed at once. States are published on the
shared-memory plane: the health flag is up only for ``ready`` (so every balancer sends new traffic only
there), and the state itself (``Plane.agent_state``) lets a service fall back to ``busy`` backends when no
backend is ready (``worker/services/affinity.py``). Snapshots appear in the admin API under
``control.agent_health`` and as metrics. Reloads behave like ``http.HealthChecker`` (one loop,
``reconcile.ServiceProbes``): unchanged services keep their task and backends keep their state (published
again on every reload, since the health checks reset unchecked backends' flags); a dropped service's task is
cancelled.
Do not combine ``agent_health`` with ``health_check`` on one service (both would drive the same flag).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ...shared import log as gwlog
from .reconcile import ServiceProbes

log = gwlog.get("master.agent_health")


@dataclass
class AgentState:
    status: str = "unreachable"
    backend_url: str = ""
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    model_name: str | None = None
    queue_depth: int | None = None
    last_latency_ms: float | None = None
    last_error: str | None = None


class ModelProbe(ServiceProbes):
    KEY = "agent_health"

    def _new_state(self, url: str) -> AgentState:
        return AgentState(backend_url=url)

    def _publish(self, idx: int, st: AgentState) -> None:
        self.plane.set_agent_state(idx, st.status)
        self.plane.set_healthy(idx, st.status == "ready")

    def _unprobed(self, idx: int) -> None:
        self.plane.set_agent_state(idx, None)   # no agent state; the health flag is the health checks' own

    def snapshot(self) -> dict[str, Any]:
        return {key: {"status": s.status, "backend_url": s.backend_url,
                      "consecutive_failures": s.consecutive_failures,
                      "consecutive_successes": s.consecutive_successes, "model_name": s.model_name,
                      "queue_depth": s.queue_depth, "last_latency_ms": s.last_latency_ms,
                      "last_error": s.last_error}
                for key, s in sorted(self.states.items())}

    async def _probe(self, service: str, cfg: dict[str, Any], url: str, idx: int) -> None:
        session, target = self._target(url, cfg["path"])
        t0 = time.perf_counter()
        doc: Any = None
        error = None
        try:
            async with session.get(target, timeout=aiohttp.ClientTimeout(total=cfg["timeout"]),
                                        allow_redirects=False) as resp:
                body = await resp.read()
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                error = f"status {resp.status}, no JSON health document"
        except TimeoutError:
            error = f"timeout after {cfg['timeout']}s"
        except aiohttp.ClientError as e:
            error = f"{type(e).__name__}: {e}"
        latency = (time.perf_counter() - t0) * 1000.0
        st = self._state(service, url)
        before = st.status
        reported = doc.get("status") if isinstance(doc, dict) else None
        if error is None and reported not in ("loading", "ready", "busy", "error"):
            error = f"unknown health status {reported!r}"
        if error is not None:
            st.consecutive_successes = 0
            st.consecutive_failures += 1
            st.last_latency_ms = None
            st.last_error = error
            st.status = "unreachable" if st.consecutive_failures >= cfg["failure_threshold"] else "error"
        else:
            st.consecutive_failures = 0
            st.last_error = None
            st.last_latency_ms = round(latency, 3)
            model = doc.get("model") or doc.get("model_name")
            st.model_name = model if isinstance(model, str) else st.model_name
            depth = doc.get("queue_depth")
            st.queue_depth = depth if isinstance(depth, int) else None
            if reported == "ready":
                st.consecutive_successes += 1
                if st.consecutive_successes >= cfg["success_threshold"]:
                    st.status = "ready"
            else:
                st.consecutive_successes = 0
                st.status = reported
        if st.status != before:
            log.info(f"model backend {before} -> {st.status}",
                     extra={"fields": {"service": service, "server": url, "error": st.last_error}})
        self._publish(idx, st)
