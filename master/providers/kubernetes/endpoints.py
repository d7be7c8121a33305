"""A Service port → the gateway's servers: ready EndpointSlice endpoints, or an ExternalName's host.

Endpoints come from EndpointSlices (never the deprecated Endpoints), grouped by the
``kubernetes.io/service-name`` label and matched to the Service port by port *name* (EndpointSlice ports carry
the Service port's name, ``""`` when it has none), so a ``targetPort`` given by name resolves per pod. Only
endpoints whose ``conditions.ready`` is not false and that are not ``terminating`` take new traffic: a
terminating pod is drained (requests already on it finish, because a generation swap never closes
connections); a Service with none serves ``unavailable@internal`` (503) rather than vanishing (a 404 would say
the route does not exist). Addresses are de-duplicated across slices and sorted, so the same endpoints always
give the same config and no rebuild.
"""

from __future__ import annotations

from typing import Any

from .watch import Reflector

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


UNAVAILABLE = "unavailable@internal"        # answers 503: what a Service without a ready endpoint serves


class BackendError(ValueError):
    """Why a backend reference cannot be served (said with the Service's namespace/name)."""


class NoReadyEndpoints(BackendError):
    """The Service and port exist but no endpoint is ready: its routes answer 503 until one is."""


def service_port(service: dict[str, Any], port: int | str) -> dict[str, Any]:
    """The Service's port entry named or numbered ``port``."""
    for entry in service.get("spec", {}).get("ports") or []:
        if port == entry.get("port") or (isinstance(port, str) and port == entry.get("name")):
            return entry
    meta = service["metadata"]
    raise BackendError(f"service {meta['namespace']}/{meta['name']} has no port {port!r}")


def servers(services: Reflector, slices: Reflector, namespace: str, name: str, port: int | str,
            scheme: str = "http") -> list[str]:
    """The URLs of a Service port's ready endpoints (``NoReadyEndpoints`` when there are none, ``BackendError``
    when the Service or port does not exist)."""
    service = services.get(namespace, name)
    if service is None:
        raise BackendError(f"service {namespace}/{name} not found")
    spec = service.get("spec", {})
    if spec.get("type") == "ExternalName":
        number = port if isinstance(port, int) else service_port(service, port)["port"]
        return [f"{scheme}://{spec['externalName']}:{number}"]
    wanted = service_port(service, port).get("name") or ""
    urls: set[str] = set()
    for eps in slices.objects():
        meta = eps["metadata"]
        if meta.get("namespace") != namespace or (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != name:
            continue
        numbers = [p.get("port") for p in eps.get("ports") or [] if (p.get("name") or "") == wanted]
        if not numbers or numbers[0] is None:
            continue
        v6 = eps.get("addressType") == "IPv6"
        for endpoint in eps.get("endpoints") or []:
            cond = endpoint.get("conditions") or {}
            if cond.get("ready") is False or cond.get("terminating"):
                continue
            for address in endpoint.get("addresses") or []:
                urls.add(f"{scheme}://[{address}]:{numbers[0]}" if v6 else f"{scheme}://{address}:{numbers[0]}")
    if not urls:
        raise NoReadyEndpoints(f"service {namespace}/{name} port {port!r} has no ready endpoints")
    return sorted(urls)
