"""Prometheus exposition for ``GET /api/gateway/metrics``, built in the master from the shared-memory plane.

Workers never talk to Prometheus: each one counts into its own rows on the plane (``counters``,
``observations``), and this module's ``GatewayCollector`` (a prometheus_client custom collector) sums the
rows at scrape time. The master folds a dead worker's rows into the plane's ``retired`` row before its slot
is reused, so every ``_total`` series stays monotonic across worker crashes and restarts, with no file per
pid (what prometheus_client's multiprocess mode would pile up).

Label values are bounded by the config, never by traffic: entrypoint, router, service, backend (a server
URL of a service), middleware names, a method from a fixed set (``OTHER`` for the rest), a status class
(``1xx``..``5xx``, ``err`` when no response was sent) or a status code from a fixed set, worker slots, and
the AI extensions' fixed sets (privacy levels, token key kinds (never ids), priorities, model-probe states).
Raw paths and client addresses never become labels.

``exposition(gateway, accept)`` returns (body, content type): the Prometheus text format 0.0.4, or
OpenMetrics 1.0 when the scraper's Accept header asks for ``application/openmetrics-text``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import exposition
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from ..shared.config.gateway_schema import load_balancers
from ..shared.config.redact import redact_url
from ..shared.plane.ai import CACHE_COUNTERS, GUARD_REASONS
from ..shared.plane.breaker import STATE_NAMES
from ..shared.plane.health import REASONS
from ..shared.plane.observations import BOUNDS, CLASS_NAMES, entrypoint_indices
from ..shared.plane.traffic import OUTCOMES
from ..shared.vocabulary import AGENT_STATES, KEY_KINDS, LEVELS, PRIORITIES

if TYPE_CHECKING:
    from .gateway import Gateway

P = "a3s_gateway_"
OUTLIER_REASONS = tuple(r for r in REASONS if r != "passive_health")
_LE = tuple(repr(b) if b != int(b) else f"{b:.1f}" for b in BOUNDS) + ("+Inf",)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("a3s-gateway")
    except Exception:  # noqa: BLE001 — not installed as a distribution (running from a checkout)
        return "unknown"


class _CertCache:
    """Expiry of certificate files, re-read only when a file's mtime changes."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[float, list[tuple[str, float]]]] = {}

    def expiry(self, path: str) -> list[tuple[str, float]]:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return []
        hit = self.cache.get(path)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        out = []
        try:
            from cryptography import x509
            from cryptography.x509.oid import NameOID

            with open(path, "rb") as f:
                certs = x509.load_pem_x509_certificates(f.read())
            if certs:
                leaf = certs[0]
                cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                name = str(cns[0].value) if cns else leaf.subject.rfc4514_string()
                out.append((name, leaf.not_valid_after_utc.timestamp()))
        except Exception:  # noqa: BLE001 — an unreadable certificate has no expiry to report
            out = []
        self.cache[path] = (mtime, out)
        return out


class GatewayCollector:
    """Reads the plane, the arbiter and the gateway's reload state at every scrape."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.certs = _CertCache()
        self.procs: dict[int, psutil.Process] = {}
        self.version = _version()

    def describe(self) -> list[Metric]:
        return []           # no fixed set up front: the registry must not call collect() at register time

    def collect(self) -> Iterator[Metric]:
        g = self.gateway
        info = GaugeMetricFamily(P + "build_info", "Version of the running gateway.", labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield from self._reloads(g)
        yield from self._providers(g)
        yield from self._processes(g)
        plane = g.plane()
        compiled = getattr(g, "_compiled", None) or {}
        if plane is not None and compiled.get("slots"):
            yield from self._traffic(plane, compiled)
            yield from self._middlewares(plane, compiled)
            yield from self._services_of_services(plane, compiled)
            yield from self._ai(plane, compiled)
        yield from self._serving(g)
        yield from self._tls(g)

    # -- lifecycle
    def _reloads(self, g: Gateway) -> Iterator[Metric]:
        reloads = getattr(g, "_reloads", {"total": 0, "failed": 0})
        c = CounterMetricFamily(P + "config_reloads", "Config reloads attempted (SIGHUP, file watch, API).")
        c.add_metric([], reloads["total"])
        yield c
        c = CounterMetricFamily(P + "config_reloads_failed", "Config reloads rejected (the old config kept serving).")
        c.add_metric([], reloads["failed"])
        yield c
        lr = getattr(g, "_last_reload", {})
        if lr.get("ok") and lr.get("at"):
            self._last_ok = lr["at"]
        last = getattr(self, "_last_ok", None)   # kept here: a failed reload overwrites _last_reload
        if last is not None:
            ts = GaugeMetricFamily(P + "config_last_reload_success_timestamp_seconds",
                                   "Unix time of the last successful config load (start or reload).")
            ts.add_metric([], last)
            yield ts
        gen = GaugeMetricFamily(P + "config_generation", "Config generation being served.")
        gen.add_metric([], getattr(g, "_generation", 0))
        yield gen

    def _providers(self, g: Gateway) -> Iterator[Metric]:
        """The store providers (master/providers/) and Kubernetes: connected, objects served, reads with rejected
        objects."""
        control = g.control()
        providers = control["providers"] + ([control["kubernetes"]] if control.get("kubernetes") else [])
        if not providers:
            return
        up = GaugeMetricFamily(P + "provider_connected", "1 while a store provider is connected to its source "
                               "(Kubernetes: every watch has listed).", labels=["provider"])
        objects = GaugeMetricFamily(P + "provider_objects", "Routers, services and middlewares a provider serves.",
                                    labels=["provider"])
        bad = CounterMetricFamily(P + "provider_rejected_updates", "Reads of a provider's source with objects "
                                  "left out or kept at their last good version.", labels=["provider"])
        for p in providers:
            up.add_metric([p["name"]], int(p["connected"]))
            objects.add_metric([p["name"]], p["objects"])
            bad.add_metric([p["name"]], p["rejected_updates"])
        yield from (up, objects, bad)

    def _processes(self, g: Gateway) -> Iterator[Metric]:
        arb = getattr(g, "_arbiter", None)
        workers = arb.snapshot() if arb is not None else []
        alive = GaugeMetricFamily(P + "workers", "Worker processes alive.")
        alive.add_metric([], sum(1 for w in workers if w["alive"]))
        yield alive
        restarts = CounterMetricFamily(P + "worker_restarts", "Times a worker slot was respawned after its worker "
                                       "died.", labels=["slot"])
        cpu = CounterMetricFamily(P + "process_cpu_seconds", "CPU time (user + system) of the gateway's processes; "
                                  "a worker's count restarts with the worker.", labels=["process"])
        rss = GaugeMetricFamily(P + "process_resident_memory_bytes", "Resident memory of the gateway's processes.",
                                labels=["process"])
        procs = [("master", os.getpid())] + [(f"worker-{w['slot']}", w["pid"]) for w in workers if w["alive"]]
        seen = set()
        for w in workers:
            restarts.add_metric([str(w["slot"])], w["restarts"])
        for label, pid in procs:
            seen.add(pid)
            proc = self.procs.get(pid)
            try:
                if proc is None:
                    proc = self.procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    t = proc.cpu_times()
                    mem = proc.memory_info().rss
            except psutil.Error:
                continue
            cpu.add_metric([label], t.user + t.system)
            rss.add_metric([label], mem)
        for pid in [p for p in self.procs if p not in seen]:
            del self.procs[pid]
        yield restarts
        yield cpu
        yield rss

    # -- traffic, from the plane
    def _traffic(self, plane: Any, compiled: dict[str, Any]) -> Iterator[Metric]:
        slots = compiled["slots"]
        config = compiled["config"]
        routers_cfg = config.get("routers", {})
        totals = plane.totals()
        obs = plane.observation_totals()
        routers = slots.get("routers", {})
        services = slots.get("services", {})
        backends = slots.get("backends", {})
        router_service = {name: routers_cfg.get(name, {}).get("service", "") for name in routers}

        ep_names = {i: n for n, i in entrypoint_indices(config.get("entrypoints", {})).items()}
        req = CounterMetricFamily(P + "requests", "Requests answered, by entrypoint, method and status class "
                                  "(err: no response was sent).", labels=["entrypoint", "method", "code_class"])
        for (ep, method, cls), n in sorted(obs["requests"].items()):
            req.add_metric([ep_names.get(ep, "other"), method, cls], n)
        yield req

        def per_entity(kind: str, name: str, doc: str, labels: list[str], keys: dict[str, int],
                       label_values: Any) -> Iterator[Metric]:
            data = totals[kind]
            c = CounterMetricFamily(P + name + "_requests", f"Requests answered, by {doc} and status class.",
                                    labels=labels + ["code_class"])
            bi = CounterMetricFamily(P + name + "_request_bytes", f"Request body bytes received (TCP/UDP: bytes "
                                     f"relayed from the client), by {doc}.", labels=labels)
            bo = CounterMetricFamily(P + name + "_response_bytes", f"Response body bytes sent (TCP/UDP: bytes "
                                     f"relayed to the client), by {doc}.", labels=labels)
            cn = CounterMetricFamily(P + name + "_connections", f"TCP connections and UDP sessions that ended, by "
                                     f"{doc} and outcome (relayed, or failed: no backend reached).",
                                     labels=labels + ["outcome"])
            cs = CounterMetricFamily(P + name + "_connection_duration_seconds", "Seconds the relayed TCP "
                                     f"connections and UDP sessions lasted, summed, by {doc}.", labels=labels)
            for key, idx in sorted(keys.items()):
                row = data.get(idx)
                if row is None:
                    continue
                lv = label_values(key)
                for cls in CLASS_NAMES:
                    if row[cls]:
                        c.add_metric(lv + [cls], row[cls])
                bi.add_metric(lv, row["bytes_in"])
                bo.add_metric(lv, row["bytes_out"])
                if row["connections"] or row["connection_failures"]:
                    cn.add_metric(lv + ["relayed"], row["connections"])
                    cn.add_metric(lv + ["failed"], row["connection_failures"])
                    cs.add_metric(lv, row["connection_ms"] / 1000)
            yield from (c, bi, bo, cn, cs)

        yield from per_entity("routers", "router", "router", ["router", "service"], routers,
                              lambda k: [k, router_service.get(k, "")])
        yield from per_entity("services", "service", "service", ["service"], services, lambda k: [k])
        yield from per_entity("backends", "backend", "backend", ["service", "backend"], backends, _backend_labels)

        hr = HistogramMetricFamily(P + "router_request_duration_seconds", "Time from the request head to the "
                                   "end of the response, by router.", labels=["router", "service"])
        for name, idx in sorted(routers.items()):
            h = obs["router_durations"].get(idx)
            if h is not None:
                hr.add_metric([name, router_service.get(name, "")], _buckets(h[0]), h[1])
        yield hr
        hs = HistogramMetricFamily(P + "service_request_duration_seconds", "Time from the request head to the "
                                   "end of the response, by service.", labels=["service"])
        for name, idx in sorted(services.items()):
            h = obs["service_durations"].get(idx)
            if h is not None:
                hs.add_metric([name], _buckets(h[0]), h[1])
        yield hs

        by_idx = {idx: name for name, idx in routers.items()}
        local = CounterMetricFamily(P + "gateway_responses", "Responses the gateway wrote itself instead of a "
                                    "backend (middleware rejections, errors), by router and status code "
                                    "(other: a code outside the fixed set).", labels=["router", "code"])
        limited = CounterMetricFamily(P + "rate_limited_requests", "Requests refused with 429 by a rate limit, "
                                      "by router.", labels=["router"])
        for (r, code), n in sorted(obs["local"].items()):
            if r in by_idx:
                local.add_metric([by_idx[r], str(code) if code else "other"], n)
                if code == 429:
                    limited.add_metric([by_idx[r]], n)
        yield local
        yield limited
        retries = CounterMetricFamily(P + "retries", "Extra upstream attempts made by retry middlewares, by router.",
                                      labels=["router"])
        for r, n in sorted(obs["retries"].items()):
            if r in by_idx:
                retries.add_metric([by_idx[r]], n)
        yield retries

        conns = GaugeMetricFamily(P + "open_connections", "Open client connections, by entrypoint and protocol.",
                                  labels=["entrypoint", "protocol"])
        summed: dict[tuple[str, str], int] = {}
        for (_slot, ep, proto), n in obs["connections"].items():
            key = (ep_names.get(ep, "other"), proto)
            summed[key] = summed.get(key, 0) + n
        for ep in sorted(set(ep_names.values())):
            for proto in ("http1", "http2"):
                summed.setdefault((ep, proto), 0)
        for (ep, proto), n in sorted(summed.items()):
            conns.add_metric([ep, proto], n)
        yield conns

        inflight = GaugeMetricFamily(P + "backend_inflight_requests", "Requests in flight to a backend, all "
                                     "workers together.", labels=["service", "backend"])
        up = GaugeMetricFamily(P + "backend_up", "1 when the backend gets traffic (active and passive health), "
                               "else 0.", labels=["service", "backend"])
        now = time.monotonic()
        for key, idx in sorted(backends.items()):
            lv = _backend_labels(key)
            inflight.add_metric(lv, totals["inflight"].get(idx, 0))
            up.add_metric(lv, 1 if plane.is_healthy(idx, now) else 0)
        yield inflight
        yield up
        yield from self._outliers(plane, compiled, now)

        breaker = GaugeMetricFamily(P + "circuit_breaker_state", "Circuit breaker state, 1 for the current one "
                                    "(closed, open, half-open), by middleware.", labels=["middleware", "state"])
        for key, idx in sorted(slots.get("breakers", {}).items()):
            state = plane.breaker_state(idx)
            for s in STATE_NAMES:
                breaker.add_metric([key.rsplit("|", 1)[0], s], 1 if s == state else 0)
        yield breaker

        misc = obs["misc"]
        for name, key, doc in (
            ("access_log_lines", "access_log_lines", "Access log lines handed to the writer."),
            ("access_log_dropped", "access_log_dropped",
             "Access log lines dropped: the writer fell behind or could not write (disk full)."),
            ("tracing_spans_exported", "spans_exported", "Spans accepted by the OTLP collector."),
            ("tracing_spans_dropped", "spans_dropped", ("Spans dropped (queue full, collector slow, down or "
                                                        "refusing).")),
        ):
            c = CounterMetricFamily(P + name, doc)
            c.add_metric([], misc.get(key, 0))
            yield c

    # -- outlier detection: ejections by reason, backends out now (shared/plane/health.py)
    def _outliers(self, plane: Any, compiled: dict[str, Any], now: float) -> Iterator[Metric]:
        slots = compiled["slots"].get("backends", {})
        ejections = CounterMetricFamily(P + "outlier_ejections", "Times a backend was ejected (taken out of "
                                        "traffic) by passive health or outlier detection, by reason: "
                                        "consecutive_5xx, consecutive_gateway_failure, success_rate, "
                                        "passive_health.", labels=["service", "backend", "reason"])
        ejected = GaugeMetricFamily(P + "outlier_ejected", "1 while the backend is ejected by passive health or "
                                    "outlier detection, else 0.", labels=["service", "backend"])
        for name, lb in load_balancers(compiled["config"].get("services", {})):
            od = lb.get("outlier_detection")
            if od is None and not lb.get("passive_health", {}).get("max_failures"):
                continue
            reasons = ("passive_health",) if od is None else OUTLIER_REASONS
            for server in lb["servers"]:
                idx = slots.get(f"{name}|{server['url']}")
                if idx is None:
                    continue
                lv = _backend_labels(f"{name}|{server['url']}")
                counts = plane.ejections(idx)
                for reason in reasons:
                    ejections.add_metric([*lv, reason], counts[reason])
                ejected.add_metric(lv, 1 if plane.is_ejected(idx, now) else 0)
        yield ejections
        yield ejected

    # -- middlewares: replies by middleware, Redis fail-opens, ai-fallback attempts
    def _middlewares(self, plane: Any, compiled: dict[str, Any]) -> Iterator[Metric]:
        configs = compiled["config"].get("middlewares", {})
        names = {idx: name for name, idx in compiled["slots"].get("middlewares", {}).items()}
        mw = plane.middleware_totals()
        rej = CounterMetricFamily(P + "middleware_rejections", "Requests a middleware answered itself instead of "
                                  "the backend (auth failures, rate limits, IP filters, redirects, CORS "
                                  "preflights...), by middleware and status code (other: a code outside the "
                                  "fixed set).", labels=["middleware", "code"])
        for (idx, code), n in sorted(mw["answers"].items()):
            if idx in names:
                rej.add_metric([names[idx], str(code) if code else "other"], n)
        yield rej
        fo = CounterMetricFamily(P + "rate_limit_redis_fail_open", "Requests a rate-limit-redis middleware let "
                                 "through because Redis was down, erroring or slower than timeout_ms.",
                                 labels=["middleware"])
        for name, params in sorted(configs.items()):
            idx = compiled["slots"].get("middlewares", {}).get(name)
            redis = params.get("type") == "rate-limit-redis" or params.get("redis_url") is not None
            if redis and idx is not None:
                fo.add_metric([name], mw["fail_open"].get(idx, 0))
        yield fo
        attempts = CounterMetricFamily(P + "ai_attempts", "Attempts of ai-fallback middlewares on their targets, by "
                                       "target (service), model (the target's model, or the request's) and outcome "
                                       "(answered, rate_limited, server_error, context_window, connect_error, "
                                       "timeout; skipped_context / skipped_cooldown: passed over unasked).",
                                       labels=["middleware", "target", "model", "outcome"])
        for (idx, t, outcome), n in sorted(mw["attempts"].items()):
            params = configs.get(names.get(idx, ""), {})
            targets = params.get("targets") or ()
            if params.get("type") == "ai-fallback" and t < len(targets):
                attempts.add_metric([names[idx], targets[t]["service"], targets[t]["model"] or "(request)", outcome],
                                    n)
        yield attempts

    # -- traffic management: mirrored requests by outcome, retries refused by the budget (shared/plane/traffic.py)
    def _services_of_services(self, plane: Any, compiled: dict[str, Any]) -> Iterator[Metric]:
        slots = compiled["slots"].get("services", {})
        totals = plane.traffic_totals()
        mirrored = CounterMetricFamily(P + "mirror_requests", "Copies of requests a mirroring service sent (or "
                                       "not) to each mirror, by outcome: sent (answered, answer discarded), "
                                       "failed, timeout, dropped (the worker's max_in_flight reached), too_large "
                                       "(body over max_body_bytes: not mirrored).",
                                       labels=["service", "mirror", "outcome"])
        exhausted = CounterMetricFamily(P + "retries_budget_exhausted", "Retries the retry middleware did not "
                                        "attempt because the service's retry budget was spent.", labels=["service"])
        activations = CounterMetricFamily(P + "failover_activations", "Times a failover service switched from "
                                          "its primary to its fallback, counted once per worker that switched.",
                                          labels=["service"])
        for name, svc in sorted(compiled["config"].get("services", {}).items()):
            record = totals.get(slots.get(name), {})
            exhausted.add_metric([name], record.get("retry_budget_exhausted", 0))
            if svc.get("failover") is not None:
                activations.add_metric([name], record.get("failover_activations", 0))
            if svc.get("mirroring") is None:
                continue
            for i, mirror in enumerate(svc["mirroring"]["mirrors"]):
                counts = record.get("mirrors", {}).get(i, {})
                for outcome in OUTCOMES:
                    mirrored.add_metric([name, mirror["name"], outcome], counts.get(outcome, 0))
        yield mirrored
        yield exhausted
        yield activations

    # -- serving (master/serving/controller.py, shared/plane/activator.py)
    def _serving(self, g: Gateway) -> Iterator[Metric]:
        labels = ["service", "revision"]
        gauges = {key: GaugeMetricFamily(P + f"serving_{name}", text, labels=labels) for key, name, text in (
            ("desired", "desired_instances", "Instances the autoscaler wants for a revision."),
            ("starting", "starting_instances", "A revision's instances whose readiness probe has not answered yet."),
            ("ready", "ready_instances", "A revision's instances that answered their readiness probe and serve."),
            ("in_flight", "in_flight_requests", "Requests in flight on a revision's instances (all workers)."),
            ("queued", "queued_requests", "Requests waiting in the activator for an instance of a revision "
                                          "(all workers)."),
            ("stable_concurrency", "stable_concurrency", "A revision's average concurrency over the stable window."),
            ("panic_concurrency", "panic_concurrency", "A revision's average concurrency over the panic window."),
            ("panicking", "panicking", "1 while a revision's autoscaler is in panic mode."))}
        refused = CounterMetricFamily(P + "serving_queue_refused", "Requests the activator answered 503 without an "
                                      "instance: the queue was full, or queue_timeout passed.",
                                      labels=[*labels, "reason"])
        errors = CounterMetricFamily(P + "serving_executor_errors", "Failures of a revision's scale executor (a "
                                     "command that exits, a refused scale call...).", labels=labels)
        waits = HistogramMetricFamily(P + "serving_queue_wait_seconds", "How long requests waited in the activator "
                                      "for an instance (a cold start, or all instances at container_concurrency).",
                                      labels=labels)
        rollout = GaugeMetricFamily(P + "serving_rollout_percent", "The percent of a served service's traffic its "
                                    "gradual rollout gives each of its two revisions now (a rollback puts the new "
                                    "one at 0).", labels=labels)
        leader = GaugeMetricFamily(P + "serving_cluster_leader", "1 while this node holds the serving cluster's "
                                   "Redis lease and decides for every node ([serving] redis_url).")
        alone = CounterMetricFamily(P + "serving_cluster_fail_open", "Coordination rounds in which Redis could not be "
                                    "reached, so this node decided alone for its own load.")
        served = g.control().get("serving", {})
        cluster = next((state["cluster"] for state in served.values() if state.get("cluster")), None)
        if cluster is not None:
            leader.add_metric([], 1.0 if cluster["role"] == "leader" else 0.0)
            alone.add_metric([], cluster["errors"])
        for service, state in sorted(served.items()):
            for name, percent in sorted((state["rollout"] or {"split": {}})["split"].items()):
                rollout.add_metric([service, name], percent)
            for name, rev in sorted(state["revisions"].items()):
                for key, family in gauges.items():
                    family.add_metric([service, name], float(rev[key]))
                errors.add_metric([service, name], rev["executor"]["errors"])
                queue = rev["queue"]
                if queue is not None:
                    refused.add_metric([service, name, "full"], queue["full"])
                    refused.add_metric([service, name, "timeout"], queue["timeout"])
                    waits.add_metric([service, name], _buckets(queue["waits"]), queue["wait_sum_us"] / 1e6)
        yield from gauges.values()
        yield from (refused, errors, waits, rollout, leader, alone)

    # -- AI-agent extensions (shared/plane/ai.py, master/probes/model.py)
    def _ai(self, plane: Any, compiled: dict[str, Any]) -> Iterator[Metric]:
        config = compiled["config"]
        slots = compiled["slots"]
        types = {p.get("type") for p in config.get("middlewares", {}).values()}
        c = plane.ai_counters()
        if "privacy-router" in types or any(c[f"privacy_{lv}"] for lv in LEVELS):
            m = CounterMetricFamily(P + "privacy_requests", "Requests classified by a privacy-router, by the "
                                    "level found (public < internal < confidential < restricted).",
                                    labels=["level"])
            for lv in LEVELS:
                m.add_metric([lv], c[f"privacy_{lv}"])
            yield m
            for name, key, doc in (
                ("privacy_tee_routed", "privacy_tee_routed", "Requests a privacy-router sent to its TEE service."),
                ("privacy_redacted", "privacy_redacted", "Requests whose body a privacy-router redacted."),
            ):
                m = CounterMetricFamily(P + name, doc)
                m.add_metric([], c[key])
                yield m
        if "token-meter" in types or any(c[f"tokens_{k}"] for k in KEY_KINDS):
            m = CounterMetricFamily(P + "llm_tokens", "LLM tokens used by requests through a token-meter, by key "
                                    "kind (user, agent, session, global; never by id).", labels=["key_kind"])
            for k in KEY_KINDS:
                m.add_metric([k], c[f"tokens_{k}"])
            yield m
            m = CounterMetricFamily(P + "llm_tokens_estimated", "LLM tokens estimated because a response carried "
                                    "no usage (included in llm_tokens_total).")
            m.add_metric([], c["tokens_estimated"])
            yield m
            m = CounterMetricFamily(P + "token_rejections", "Requests refused with 429 by a token-meter budget, by "
                                    "the key kind over budget.", labels=["key_kind"])
            for k in KEY_KINDS:
                m.add_metric([k], c[f"token_rejected_{k}"])
            yield m
        if "priority" in types or any(c[f"priority_{w}_{p}"] for w in ("shed", "queued", "timeout")
                                      for p in PRIORITIES):
            for name, key, doc in (
                ("priority_shed", "shed", "Requests shed with 503 by a priority middleware, by priority."),
                ("priority_queued", "queued", "Requests that waited in a priority queue, by priority."),
                ("priority_queue_timeouts", "timeout", "Requests that waited queue_timeout_ms in a priority queue "
                 "without a slot (answered 503), by priority."),
            ):
                m = CounterMetricFamily(P + name, doc, labels=["priority"])
                for p in PRIORITIES:
                    m.add_metric([p], c[f"priority_{key}_{p}"])
                yield m
            yield from self._priority_gauges(plane, config, slots)
        yield from self._cache_and_guard(types, c)
        yield from self._agent_states(plane, config, slots)

    @staticmethod
    def _cache_and_guard(types: set[Any], c: dict[str, int]) -> Iterator[Metric]:
        """``semantic-cache`` and ``prompt-guard`` counters (worker/middlewares/semantic_cache.py, prompt_guard.py)."""
        if "semantic-cache" in types or any(c[n] for n in CACHE_COUNTERS):
            m = CounterMetricFamily(P + "ai_cache_lookups", "Requests through a semantic-cache, by result: hit "
                                    "(exact), semantic, miss, bypass (not cacheable: not a chat completion, "
                                    "a temperature over max_temperature, or no tenant).",
                                    labels=["result"])
            for result, key in (("hit", "cache_hits_exact"), ("semantic", "cache_hits_semantic"),
                                ("miss", "cache_misses"), ("bypass", "cache_bypassed")):
                m.add_metric([result], c[key])
            yield m
            for name, key, doc in (
                ("ai_cache_tokens_saved", "cache_tokens_saved", "Tokens (the stored usage.total_tokens) of the "
                 "answers a semantic-cache served instead of the upstream."),
                ("ai_cache_embedding_failures", "cache_embedding_failures", "Embedding calls of a semantic-cache "
                 "that failed or timed out (the request went on with exact matching only)."),
            ):
                m = CounterMetricFamily(P + name, doc)
                m.add_metric([], c[key])
                yield m
        if "prompt-guard" in types or any(c[f"guard_{r}"] for r in GUARD_REASONS):
            m = CounterMetricFamily(P + "prompt_guard_refusals", "Requests a prompt-guard refused with 403, by "
                                    "reason: denied_pattern, denied_detector, not_allowed.", labels=["reason"])
            for r in GUARD_REASONS:
                m.add_metric([r], c[f"guard_{r}"])
            yield m

    def _priority_gauges(self, plane: Any, config: dict[str, Any], slots: dict[str, Any]) -> Iterator[Metric]:
        prio = {n for n, p in config.get("middlewares", {}).items() if p.get("type") == "priority"}
        services = sorted({r["service"] for r in config.get("routers", {}).values()
                           if prio.intersection(r.get("middlewares", []))})
        inflight = GaugeMetricFamily(P + "priority_inflight_requests", "Requests admitted by a priority "
                                     "middleware and still in flight, by service (all workers).",
                                     labels=["service"])
        depth = GaugeMetricFamily(P + "priority_queue_depth", "Requests waiting in a priority queue, by service "
                                  "and priority (all workers).", labels=["service", "priority"])
        for svc in services:
            idx = slots.get("services", {}).get(svc)
            if idx is None:
                continue
            g = plane.priority_gauges(idx)
            inflight.add_metric([svc], g[0])
            for p, n in zip(PRIORITIES, g[1:], strict=True):
                depth.add_metric([svc, p], n)
        yield inflight
        yield depth

    def _agent_states(self, plane: Any, config: dict[str, Any], slots: dict[str, Any]) -> Iterator[Metric]:
        probed = [(name, svc) for name, svc in sorted(config.get("services", {}).items())
                  if (svc.get("load_balancer") or {}).get("agent_health") is not None]
        if not probed:
            return
        m = GaugeMetricFamily(P + "backend_agent_state", "Model-probe state of a backend (agent_health), 1 for the "
                              "current one (loading, ready, busy, error, unreachable).",
                              labels=["service", "backend", "state"])
        backends = slots.get("backends", {})
        for name, svc in probed:
            for server in svc["load_balancer"]["servers"]:
                idx = backends.get(f"{name}|{server['url']}")
                if idx is None:
                    continue
                state = plane.agent_state(idx) or "unreachable"
                for st in AGENT_STATES:
                    m.add_metric([name, redact_url(server["url"]), st], 1 if st == state else 0)
        yield m

    # -- TLS
    def _tls(self, g: Gateway) -> Iterator[Metric]:
        m = GaugeMetricFamily(P + "tls_certificate_expiry_timestamp_seconds", "Unix time a configured certificate "
                              "expires (notAfter), by entrypoint and certificate name (CN).",
                              labels=["entrypoint", "name"])
        for ep_name, ep in sorted(g.config().entrypoints.items()):
            tls = ep.get("tls") or {}
            files = [tls.get("cert_file")] + [c.get("cert_file") for c in tls.get("certificates") or []]
            seen = set()
            for path in files:
                if not path:
                    continue
                for name, ts in self.certs.expiry(path):
                    if name not in seen:
                        seen.add(name)
                        m.add_metric([ep_name, name], ts)
        yield m


def _backend_labels(key: str) -> list[str]:
    """``[service, url]`` of a backend's plane key ``service|url``, the URL's password masked (labels are public)."""
    service, _, url = key.partition("|")
    return [service, redact_url(url)]


def _buckets(raw: list[int]) -> list[tuple[str, float]]:
    out, acc = [], 0
    for le, n in zip(_LE, raw):
        acc += n
        out.append((le, acc))
    return out


class Metrics:
    """The registry behind ``/api/gateway/metrics`` (one per gateway)."""

    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gateway))  # type: ignore[arg-type]

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(self.registry), content_type
