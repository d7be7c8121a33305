"""packaging/kubernetes/rbac.yaml grants exactly what the provider reads and writes: list + watch on every watched
kind, patch on the status of the kinds whose status it writes, create on Events, nothing else cluster-wide."""

from __future__ import annotations

from pathlib import Path

import yaml
from a3s_gateway.master.providers.kubernetes.provider import CRD_KINDS, GATEWAY_KINDS, KINDS

RBAC = Path(__file__).resolve().parents[2] / "packaging" / "kubernetes" / "rbac.yaml"


def cluster_grants() -> dict[tuple[str, str], set[str]]:
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "ClusterRole")
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_every_watched_kind_is_listable_and_only_written_statuses_are_patchable() -> None:
    wanted: dict[tuple[str, str], set[str]] = {}
    for kind in KINDS + GATEWAY_KINDS + CRD_KINDS:
        info = kind.resource._api_info
        wanted.setdefault((info.resource.group, info.plural), set()).update({"list", "watch"})
        if kind.status_is_ours:
            wanted[(info.resource.group, f"{info.plural}/status")] = {"patch"}
    wanted[("events.k8s.io", "events")] = {"create"}       # events.py: Events about objects with problems
    grants = cluster_grants()
    for key, verbs in wanted.items():
        assert verbs == grants.get(key, set()), key
    extra = {key: verbs for key, verbs in grants.items() if key not in wanted}
    assert extra == {}
    assert {key for key, verbs in grants.items() if verbs & {"create", "update", "delete"}} == {
        ("events.k8s.io", "events")}
