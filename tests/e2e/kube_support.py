"""Kubernetes objects for the e2e tests (loopback backends stand in for pods) and the gateway config around them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kube_apiserver import FakeApiServer

CONTROLLER = "a3s.io/ingress-controller"


def config(api: FakeApiServer, tmp: Path, extra: str = "", provider: str = "", tls: str = "") -> str:
    """A gateway config watching ``api`` (kubeconfig file), a fast throttle, status to 10.0.0.1."""
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    return f"""
[entrypoints.web]
address = "127.0.0.1:{{web}}"
{tls}
[admin]
address = "127.0.0.1:{{admin}}"
[providers.kubernetes]
kubeconfig = "{kubeconfig}"
throttle = "0.2s"
certs_dir = "{tmp / 'k8s-certs'}"
status = {{published_address = "10.0.0.1"}}
leader_election = {{lease_duration = "3s"}}
{provider}
{extra}
"""


def tls_entrypoint(name: str, port: int, default: Any) -> str:
    """A TLS entrypoint whose default certificate is the ``default`` pair; Secrets add theirs (SNI)."""
    return f"""
[entrypoints.{name}]
address = "127.0.0.1:{port}"
[entrypoints.{name}.tls]
cert_file = "{default.cert}"
key_file = "{default.key}"
"""


def ingress_class(name: str = "a3s", default: bool = False, controller: str = CONTROLLER) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"kind": "IngressClass", "metadata": meta, "spec": {"controller": controller}}


def service(name: str, port: int = 80, port_name: str = "http", namespace: str = "default",
            external: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}
    if external:
        spec = {**spec, "type": "ExternalName", "externalName": external}
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def slice_for(svc: str, ports: list[int], port_name: str = "http", namespace: str = "default",
              name: str | None = None, terminating: tuple[int, ...] = ()) -> dict[str, Any]:
    """An EndpointSlice whose endpoints are loopback backends on ``ports`` (one port per 'pod')."""
    # every pod of a real slice shares the port; loopback backends differ by port, so one slice per backend
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name or f"{svc}-{ports[0]}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": port_name, "port": ports[0], "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"],
                           "conditions": {"ready": p not in terminating, "terminating": p in terminating}}
                          for p in ports]}


def backend(svc: str, port: int | str = 80) -> dict[str, Any]:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": svc, "port": {key: port}}}


def path(p: str, svc: str, path_type: str = "Prefix", port: int | str = 80) -> dict[str, Any]:
    return {"path": p, "pathType": path_type, "backend": backend(svc, port)}


def ingress(name: str, rules: list[dict[str, Any]] | None = None, cls: str | None = "a3s", namespace: str = "default",
            annotations: dict[str, str] | None = None, default_backend: dict[str, Any] | None = None,
            tls: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": rules or []}
    if cls:
        spec["ingressClassName"] = cls
    if default_backend:
        spec["defaultBackend"] = default_backend
    if tls:
        spec["tls"] = tls
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "annotations": annotations or {},
                            "labels": labels or {}}
    return {"kind": "Ingress", "metadata": meta, "spec": spec}


def rule(host: str | None, *paths: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"http": {"paths": list(paths)}}
    if host:
        out["host"] = host
    return out


def tls_secret(name: str, cert: Path, key: Path, namespace: str = "default") -> dict[str, Any]:
    return {"kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                     "tls.key": base64.b64encode(key.read_bytes()).decode()}}


def kube_state(gw: Any) -> dict[str, Any]:
    """The provider's snapshot from the admin API's health document."""
    return gw.health()["control"]["kubernetes"] or {}
