"""Gateway API objects for the e2e tests: a GatewayClass of ours, a Gateway whose HTTP listener is the gateway's
``web`` entrypoint port, HTTPRoutes built from compact rule descriptions, ReferenceGrants."""

from __future__ import annotations

from typing import Any

GROUP = "gateway.networking.k8s.io"
GATEWAY_CONTROLLER = "a3s.io/gateway-controller"


def gateway_class(name: str = "a3s", controller: str = GATEWAY_CONTROLLER) -> dict[str, Any]:
    return {"kind": "GatewayClass", "metadata": {"name": name, "generation": 1},
            "spec": {"controllerName": controller}}


def listener(name: str, port: int, protocol: str = "HTTP", hostname: str | None = None,
             allowed: str = "Same", certs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": port, "protocol": protocol,
                           "allowedRoutes": {"namespaces": {"from": allowed}}}
    if hostname:
        out["hostname"] = hostname
    if certs is not None:
        out["tls"] = {"mode": "Terminate", "certificateRefs": certs}
    return out


def gateway(name: str, listeners: list[dict[str, Any]], cls: str = "a3s", namespace: str = "default") -> dict[str, Any]:
    return {"kind": "Gateway", "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {"gatewayClassName": cls, "listeners": listeners}}


def backend_ref(svc: str, weight: int | None = None, port: int | None = 80, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": svc, **extra}
    if port is not None:
        out["port"] = port
    if weight is not None:
        out["weight"] = weight
    return out


def route_rule(matches: list[dict[str, Any]] | None, *backends: str | dict[str, Any],
               filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"backendRefs": [backend_ref(b) if isinstance(b, str) else b for b in backends]}
    if matches is not None:
        out["matches"] = matches
    if filters:
        out["filters"] = filters
    return out


def http_route(name: str, rules: list[dict[str, Any]], hostnames: list[str] | None = None, namespace: str = "default",
               parents: list[dict[str, Any]] | None = None, created: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": 1}
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {"parentRefs": parents or [{"name": "same-namespace", "namespace": "default"}],
                            "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"kind": "HTTPRoute", "metadata": meta, "spec": spec}


def reference_grant(name: str, namespace: str, from_kind: str, from_ns: str, to_kind: str) -> dict[str, Any]:
    return {"kind": "ReferenceGrant", "metadata": {"name": name, "namespace": namespace},
            "spec": {"from": [{"group": GROUP, "kind": from_kind, "namespace": from_ns}],
                     "to": [{"group": "", "kind": to_kind}]}}


def prefix(value: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}}


def exact(value: str) -> dict[str, Any]:
    return {"path": {"type": "Exact", "value": value}}


def headers(**values: str) -> dict[str, Any]:
    return {"headers": [{"name": k.replace("_", "-"), "value": v} for k, v in values.items()]}


def query(**values: str) -> dict[str, Any]:
    return {"queryParams": [{"name": k, "value": v} for k, v in values.items()]}


def conditions(obj: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """``{type: (status, reason)}`` of an object's ``status.conditions``."""
    return {c["type"]: (c["status"], c["reason"]) for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def parent_conditions(route: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """``{type: (status, reason)}`` of our (first) parent entry in a route's status."""
    parents = [p for p in ((route or {}).get("status") or {}).get("parents") or []
               if p.get("controllerName") == GATEWAY_CONTROLLER]
    return {c["type"]: (c["status"], c["reason"]) for p in parents[:1] for c in p.get("conditions") or []}
