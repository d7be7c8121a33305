"""Our CRDs' manifest (``packaging/kubernetes/crd.yaml``): generated from the config schema and current, a valid
Kubernetes structural schema, and what it accepts and refuses (checked with a JSON-schema validator, as the API
server's OpenAPI v3 checks are)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from a3s_gateway.master.providers.kubernetes.manifests import render

CRD = Path(__file__).resolve().parents[2] / "packaging" / "kubernetes" / "crd.yaml"
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def schemas() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(CRD.read_text()) if d]
    return {d["spec"]["names"]["kind"]: d["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for d in docs}


def test_the_crd_manifest_is_generated_from_the_current_schema() -> None:
    assert CRD.read_text() == render(), ("packaging/kubernetes/crd.yaml is stale: run "
                                         "python -m a3s_gateway.master.providers.kubernetes.manifests "
                                         "packaging/kubernetes/crd.yaml")


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """What breaks the apiextensions structural-schema rules (a type everywhere, no junctors, no defaults)."""
    out = []
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields") \
            and not node.get("x-kubernetes-int-or-string"):
        out.append(f"{path or '/'}: no type")
    out += [f"{path}: {key}" for key in (*JUNCTORS, "default", "$ref") if key in node]
    if ("properties" in node or "additionalProperties" in node) and node.get("type") != "object":
        out.append(f"{path}: properties on a non-object")
    for key, child in (node.get("properties") or {}).items():
        out += structural_problems(child, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        out += structural_problems(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        out += structural_problems(node["items"], f"{path}[]")
    return out


@pytest.mark.parametrize("kind", ["Route", "Middleware"])
def test_each_crd_schema_is_structural(kind: str) -> None:
    assert structural_problems(schemas()[kind]) == []


def accepted(kind: str, spec: Any) -> bool:
    try:
        jsonschema.Draft4Validator(schemas()[kind]).validate({"spec": spec})   # OpenAPI 3.0 is draft 4 here
    except jsonschema.ValidationError:
        return False
    return True


ROUTE = {"routers": {"shop": {"rule": "Host(`shop.test`)", "service": "app", "middlewares": ["strip"],
                              "priority": 10}},
         "services": {"app": {"load_balancer": {"servers": [{"url": "http://10.0.0.1:80"}], "strategy": "round-robin",
                                                "health_check": {"path": "/health", "interval": "10s"}}},
                      "split": {"weighted": {"services": [{"name": "app", "weight": 3}]}}},
         "middlewares": {"strip": {"type": "strip-prefix", "prefixes": ["/api"]},
                         "limit": {"type": "rate-limit", "rate": 10, "burst": 20}}}


@pytest.mark.parametrize(("kind", "spec", "ok"), [
    ("Route", ROUTE, True),
    ("Middleware", {"type": "headers", "request_headers": {"X-From": "crd"}}, True),
    ("Middleware", {"type": "retry", "max_retries": 2, "initial_interval": 0.1}, True),
    ("Middleware", {"type": "no-such-type"}, False),
    ("Middleware", {"prefixes": ["/api"]}, False),                               # no type
    ("Middleware", {"type": "rate-limit", "rate": "ten"}, False),
    ("Middleware", {"type": "strip-prefix", "prefixes": "/api"}, False),
    ("Route", {"routers": {"r": {"rule": "Host(`a`)", "priority": "high"}}}, False),
    ("Route", {"routers": {"r": {"service": "s"}}}, False),                      # rule is required
    ("Route", {"services": {"s": {"load_balancer": {"servers": [{"url": 5}]}}}}, False),
])
def test_the_api_server_refuses_wrong_types_and_missing_keys(kind: str, spec: Any, ok: bool) -> None:
    assert accepted(kind, spec) is ok
