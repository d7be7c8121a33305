"""The ``serving`` service kind: revisions run by a scale executor, traffic split across them, Knative's autoscaler.

``[services.<name>.serving]`` holds the autoscaler's keys (named after Knative's ``config-autoscaler``), the
activator's queue, ``revisions.<rev>`` (an instance template each: ``executor`` and that executor's table) and
``traffic`` (``{revision, percent, tag}``; ``latest`` names the newest revision, the last one defined).

Invariants of the normalized form:

* the autoscaler keys and every revision's scale keys are present with Knative's defaults; durations are seconds;
* ``traffic`` is never empty (absent: 100 % to ``latest``) and its percents sum to 100; ``latest`` is resolved to a
  revision name, every revision named exists and a tag is used once;
* ``rollout`` is None or names two different existing revisions in ``from`` and ``to`` (``latest`` resolved);
* a revision has exactly its ``executor``'s table: ``process`` is checked here (``ports`` becomes ``[low, high]``),
  the other kinds' tables are free-form and checked by their executor class (``ScaleExecutor.validate``, in the
  master, which may import what it needs); the other kinds' tables normalize to None.

The top-level ``[serving]`` table (``CLUSTER``) is the node's, not a service's: with ``redis_url`` set, the gateway
nodes share their load and one set of decisions through Redis (``master/serving/cluster.py``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .schema import (
    INVALID,
    Duration,
    Field,
    Int,
    ListOf,
    MapOf,
    Nullable,
    Number,
    Reporter,
    Spec,
    Str,
    Table,
    join,
    path_error,
    url_check,
)

EXECUTORS = ("process", "docker", "http", "kubernetes")
"""The scale executors a revision may name (``master/serving/executors``)."""

LATEST = "latest"
TAG_HEADER = "Knative-Serving-Tag"


class FreeTable(Spec):
    """Any table, kept as given: the settings of an executor that checks them itself."""

    expected = "a table"

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        if not isinstance(value, dict):
            self.type_error(value, path, rep)
            return INVALID
        return copy.deepcopy(value)


def _ports(text: str) -> Any:
    match = re.fullmatch(r"(\d+)-(\d+)", text.strip())
    if not match or not 1 <= int(match[1]) <= int(match[2]) <= 65535:
        return None
    return [int(match[1]), int(match[2])]


def _ports_error(text: str) -> str | None:
    return None if _ports(text) else f"expected a port range like '9100-9199' (low first, 1-65535), got {text!r}"


def _process_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if isinstance(out.get("ports"), str):
        out["ports"] = _ports(out["ports"])
    if "command" in out and "{port}" not in out["command"]:
        rep.add(join(path, "command"), "must contain '{port}' (the instance listens on the port it is given)")


class _PortRange(Str):
    """``"low-high"``, normalized to ``[low, high]`` (a normalized value is accepted again)."""

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            value = f"{value[0]}-{value[1]}"
        return super().convert(value, path, rep)


PROCESS = Table(
    {
        "command": Field(Str(nonempty=True), required=True),    # run by /bin/sh; '{port}' is filled in
        "ports": Field(_PortRange(check=_ports_error), "9100-9199"),
        "env": Field(MapOf(Str()), {}),
        "cwd": Field(Nullable(Str(nonempty=True))),
    },
    post=_process_post,
)

_POSITIVE = Duration(check=lambda s: None if s > 0 else "must be greater than 0")


def _revision_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    kind = out.get("executor")
    for other in EXECUTORS:
        if other != kind and raw.get(other) is not None:
            rep.add(join(path, other), f"the revision's executor is {kind!r}; this table is for {other!r}")
    if kind is not None and out.get(kind) is None:
        rep.add(join(path, kind), f"required: the settings of the {kind!r} executor")
    low, high = out.get("min_scale"), out.get("max_scale")
    if low is not None and high is not None and low > high:
        rep.add(join(path, "min_scale"), f"must not exceed max_scale ({high}), got {low}")
    for key in ("initial_scale", "activation_scale"):
        if high is not None and out.get(key, 0) > high:
            rep.add(join(path, key), f"must not exceed max_scale ({high}), got {out[key]}")
    ports = (out.get("process") or {}).get("ports")
    if kind == "process" and ports and high is not None and ports[1] - ports[0] + 1 < high:
        rep.add(join(join(path, "process"), "ports"),
                f"{ports[1] - ports[0] + 1} ports cannot hold max_scale = {high} instances")


REVISION = Table(
    {
        "executor": Field(Str(choices=EXECUTORS), required=True),
        "process": Field(Nullable(PROCESS)),
        **{kind: Field(Nullable(FreeTable())) for kind in EXECUTORS if kind != "process"},
        "container_concurrency": Field(Int(minimum=0), 0),      # requests in flight per instance; 0 = no limit
        "ready_path": Field(Str(check=path_error), "/"),
        "min_scale": Field(Int(minimum=0), 0),
        "max_scale": Field(Int(minimum=1), 10),
        "initial_scale": Field(Int(minimum=0), 1),
        "activation_scale": Field(Int(minimum=1), 1),          # the first scale from zero goes straight to this
        "timeouts": Field(Table({"connect": Field(Duration(), 5.0), "response_header": Field(Duration(), 60.0)}),
                          {}),
    },
    post=_revision_post,
)

TARGET = Table({
    "revision": Field(Str(nonempty=True), required=True),
    "percent": Field(Int(minimum=0, maximum=100), required=True),
    "tag": Field(Nullable(Str(check=lambda t: None if re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", t)
                              else "a tag is a DNS label: lower-case letters, digits and '-'"))),
})


# Gradual rollout (master/serving/rollout.py): traffic moves from ``from`` to ``to`` in steps gated on health.
ROLLOUT = Table({
    "from": Field(Str(nonempty=True), required=True),
    "to": Field(Str(nonempty=True), required=True),
    "step_percent": Field(Int(minimum=1, maximum=100), 10),
    "step_interval": Field(_POSITIVE, 30.0),
    "max_error_rate": Field(Number(minimum=0, maximum=1), 0.01),
    "max_p99": Field(Nullable(_POSITIVE)),
    "min_requests": Field(Int(minimum=1), 10),
})


def _serving_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    revisions = out.get("revisions")
    if not isinstance(revisions, dict):
        return
    if not revisions:
        rep.add(join(path, "revisions"), "a served service needs at least one revision")
        return
    latest = list(revisions)[-1]
    rollout = out.get("rollout")
    if rollout is not None:
        for key in ("from", "to"):
            if rollout.get(key) == LATEST:
                rollout[key] = latest
            if key in rollout and rollout[key] not in revisions:
                rep.add(join(path, f"rollout.{key}"), f"unknown revision '{rollout[key]}' (defined: "
                        f"{', '.join(revisions)}, or 'latest')")
        if rollout.get("from") is not None and rollout.get("from") == rollout.get("to"):
            rep.add(join(path, "rollout.to"), f"must differ from rollout.from ('{rollout['from']}')")
    traffic = out.get("traffic")
    if traffic is None:
        return
    if not traffic:
        traffic.append({"revision": latest, "percent": 100, "tag": None})
    tags: set[str] = set()
    for i, target in enumerate(traffic):
        if target["revision"] == LATEST:
            target["revision"] = latest
        elif target["revision"] not in revisions:
            rep.add(join(path, f"traffic[{i}].revision"), f"unknown revision '{target['revision']}' (defined: "
                    f"{', '.join(revisions)}, or 'latest')")
        if target["tag"] is not None:
            if target["tag"] in tags:
                rep.add(join(path, f"traffic[{i}].tag"), f"tag '{target['tag']}' is used twice")
            tags.add(target["tag"])
    total = sum(t["percent"] for t in traffic)
    if total != 100:
        rep.add(join(path, "traffic"), f"percents must sum to 100, got {total}")


SERVING = Table(
    {
        "revisions": Field(MapOf(REVISION), required=True),
        "traffic": Field(ListOf(TARGET), []),
        "rollout": Field(Nullable(ROLLOUT)),       # while set, it decides the split (docs/serving.md)
        # the autoscaler (master/serving/autoscaler.py): Knative KPA's keys and defaults
        "target": Field(Nullable(Number(minimum=0.01))),          # concurrent requests per instance wanted
        "target_utilization": Field(Number(minimum=0, exclusive_minimum=True, maximum=1), 0.7),
        "stable_window": Field(_POSITIVE, 60.0),
        "panic_window_percentage": Field(Number(minimum=1, maximum=100), 10.0),
        "panic_threshold_percentage": Field(Number(minimum=110, maximum=1000), 200.0),
        "max_scale_up_rate": Field(Number(minimum=1, exclusive_minimum=True), 1000.0),
        "max_scale_down_rate": Field(Number(minimum=1, exclusive_minimum=True), 2.0),
        "scale_down_delay": Field(Duration(), 0.0),
        "scale_to_zero_grace": Field(Duration(), 30.0),
        "tick": Field(_POSITIVE, 2.0),                            # how often the autoscaler decides
        # the activator (worker/services/activator.py): requests waiting for an instance, node-wide
        "queue_depth": Field(Int(minimum=1), 10000),
        "queue_timeout": Field(_POSITIVE, 300.0),
    },
    post=_serving_post,
)


# More than one gateway node (master/serving/cluster.py): loads and decisions shared through Redis, one leader.
CLUSTER = Table(
    {
        "redis_url": Field(Nullable(Str(check=url_check("redis", "rediss")))),    # null: every node decides alone
        "key_prefix": Field(Str(nonempty=True), "a3s:serving"),
        "lease": Field(Duration(check=lambda s: None if s >= 2 else "must be at least 2s (renewed every second)"),
                       6.0),
        "timeout_ms": Field(Int(minimum=1), 500),
    }
)


def revision_service(service: str, revision: str) -> str:
    """The name of the load balancer a revision compiles to (a child of the service's weighted split)."""
    return f"{service}.{revision}"
