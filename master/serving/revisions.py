"""How a served service compiles to what the workers already know: a weighted service over one load balancer per
revision, plus a route per traffic tag.

``expand(data, live)`` rewrites normalized config data in place (the effective config of one generation, never
the static one):

* ``services.<name>`` (kind ``serving``) becomes ``weighted`` over ``<name>.<rev>`` with weight = the percent of
  the traffic targets naming the revision, or the split of a rollout in progress (``live.split``); a revision at
  0 % takes no share, but its tag still reaches it;
* ``services.<name>.<rev>`` is a round-robin load balancer whose servers are the revision's *ready* instances
  (``live.ready``, possibly none), carrying an ``activator`` table the worker reads
  (``worker/services/activator.py``): the revision's ``container_concurrency``, the queue's limits and why the
  revision cannot get an instance now (``live.failing``, None when nothing is wrong);
* for each tag and each router naming the service, a router ``<router>.<tag>`` to ``<name>.tag.<tag>`` (a weighted
  service with that one revision) whose rule is the router's rule plus the header ``Knative-Serving-Tag: <tag>``,
  or any of the hosts ``<tag>-<host>`` of the router's rule, one priority above the router.

Invariant: every name ``expand`` adds is reported by ``problems`` when the static config already defines it, so an
expansion never overwrites a user's object.
"""

from __future__ import annotations

from typing import Any, Protocol

from ...shared.config.serving_schema import TAG_HEADER, revision_service
from ...shared.errors import Problem
from ...shared.rules import parse_rule
from .executors import executor_class


class Live(Protocol):
    """What the master's serving controller knows that the config does not."""

    def ready(self, service: str, revision: str) -> list[str]:
        """The addresses of the revision's ready instances."""

    def failing(self, service: str, revision: str) -> str | None:
        """Why the revision cannot get an instance now, or None."""

    def split(self, service: str) -> dict[str, int] | None:
        """The percents a rollout in progress gives the revisions (None: the config's ``traffic``)."""


class Idle:
    """Before the controller runs: no instance, nothing failing, the config's split."""

    def ready(self, service: str, revision: str) -> list[str]:
        return []

    def failing(self, service: str, revision: str) -> str | None:
        return None

    def split(self, service: str) -> dict[str, int] | None:
        return None


def tag_service(service: str, tag: str) -> str:
    return f"{service}.tag.{tag}"


def served(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``serving`` tables of the served services, by service name."""
    return {name: svc["serving"] for name, svc in services.items() if svc.get("serving") is not None}


def problems(data: dict[str, Any], source: str) -> list[Problem]:
    """What the schema cannot see: executor kinds this build lacks, executor settings their class rejects, and
    names the expansion needs that the config already uses."""
    out: list[Problem] = []
    services, routers = data.get("services", {}), data.get("routers", {})
    for name, serving in served(services).items():
        base = f"services.{name}.serving"
        for rev, revision in serving["revisions"].items():
            path = f"{base}.revisions.{rev}"
            kind = revision["executor"]
            cls = executor_class(kind)
            if cls is None:
                out.append(Problem(source, f"{path}.executor", f"the {kind!r} executor is not available in this "
                                   "build", None))
            else:
                out += [Problem(source, f"{path}.{kind}", message, None)
                        for message in cls.validate(revision[kind] or {})]
            if revision_service(name, rev) in services:
                out.append(Problem(source, path, f"service '{revision_service(name, rev)}' already exists; the "
                                   "revision's load balancer needs that name", None))
        for i, target in enumerate(serving["traffic"]):
            tag = target["tag"]
            if tag is not None and tag_service(name, tag) in services:
                out.append(Problem(source, f"{base}.traffic[{i}].tag", f"service '{tag_service(name, tag)}' "
                                   "already exists; the tag's route needs that name", None))
            for router, r in routers.items():
                if tag is not None and r.get("service") == name and f"{router}.{tag}" in routers:
                    out.append(Problem(source, f"{base}.traffic[{i}].tag", f"router '{router}.{tag}' already "
                                       "exists; the tag's route needs that name", None))
    return out


def expand(data: dict[str, Any], live: Live) -> None:
    services, routers = data["services"], data["routers"]
    for name, serving in served(services).items():
        weights: dict[str, int] = dict.fromkeys(serving["revisions"], 0)
        split = live.split(name)
        if split is not None:
            weights.update(split)
        else:
            for target in serving["traffic"]:
                weights[target["revision"]] += target["percent"]
        for rev, revision in serving["revisions"].items():
            services[revision_service(name, rev)] = _revision_balancer(serving, revision, live.ready(name, rev),
                                                                       live.failing(name, rev))
        services[name] = _weighted([(revision_service(name, rev), w) for rev, w in weights.items()])
        for target in serving["traffic"]:
            tag = target["tag"]
            if tag is None:
                continue
            services[tag_service(name, tag)] = _weighted([(revision_service(name, target["revision"]), 1)])
            for router_name, router in list(routers.items()):
                if router.get("service") == name:
                    routers[f"{router_name}.{tag}"] = _tag_router(router, tag, tag_service(name, tag))


def _weighted(children: list[tuple[str, int]]) -> dict[str, Any]:
    return {"load_balancer": None, "failover": None, "mirroring": None, "serving": None,
            "weighted": {"services": [{"name": n, "weight": w} for n, w in children], "sticky": None}}


def _revision_balancer(serving: dict[str, Any], revision: dict[str, Any], addresses: list[str],
                       failing: str | None) -> dict[str, Any]:
    lb = {
        "strategy": "round-robin",
        "servers": [{"url": f"http://{address}", "weight": 1} for address in addresses],
        "health_check": None, "sticky": None, "affinity": None, "agent_health": None, "outlier_detection": None,
        "pass_host_header": True,
        "timeouts": {**revision["timeouts"], "idle": 90.0},
        "passive_health": {"max_failures": 0, "cooldown": 10.0, "statuses": []},
        "tls": {"ca_file": None, "insecure_skip_verify": False},
        "activator": {"container_concurrency": revision["container_concurrency"],
                      "queue_depth": serving["queue_depth"], "queue_timeout": serving["queue_timeout"],
                      "failing": failing},
    }
    return {"load_balancer": lb, "weighted": None, "failover": None, "mirroring": None, "serving": None}


def _tag_router(router: dict[str, Any], tag: str, service: str) -> dict[str, Any]:
    rule = f"(Header(`{TAG_HEADER}`, `{tag}`) && ({router['rule']}))"
    hosts = sorted(parse_rule(router["rule"]).hosts or ())
    if hosts:
        rule += " || Host(" + ", ".join(f"`{tag}-{h}`" for h in hosts) + ")"
    return {**router, "rule": rule, "service": service, "priority": router["priority"] + 1}
