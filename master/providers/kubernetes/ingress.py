"""Ingress v1 + IngressClass → routers and services.

Which Ingresses are ours: ``spec.ingressClassName`` names an IngressClass whose ``spec.controller`` is ours;
else the legacy ``kubernetes.io/ingress.class`` annotation equals our class name; else (no class at all) one of
our IngressClasses is marked ``ingressclass.kubernetes.io/is-default-class: "true"`` — the default class takes
class-less Ingresses, which Traefik does not (traefik/traefik#12174).

Paths (``pathType``): ``Exact`` is ``Path``; ``Prefix`` is element-wise — ``/foo`` (or ``/foo/``: a trailing
slash is ignored) matches ``/foo`` and ``/foo/bar``, not ``/foobar`` — written ``Path(`/foo`) ||
PathPrefix(`/foo/`)``; ``ImplementationSpecific`` is treated as ``Prefix``. Precedence is carried by the
router priority: exact host > wildcard host > no host, then the longer path, then Exact over Prefix on a tie
(``precedence``), written as dense ranks from 2 up (so a file router with an explicit priority above the number
of Ingress paths still comes first, as for the Gateway API; the raw precedence would be in the millions). A
wildcard host ``*.foo.com`` matches exactly one label (``bar.foo.com``, not ``a.bar.foo.com`` or ``foo.com``).
``spec.defaultBackend`` is a catch-all at priority 1 (below every rule and every file router with a default
priority), of the oldest Ingress that has one.

Backends: a Service by port number or name, its ready EndpointSlice endpoints (``endpoints.py``). A backend
that cannot be served (no Service, no port) leaves that path out and is reported with the Ingress's
namespace/name; the other paths keep serving. A Service with no ready endpoint keeps its path, answering 503.
``spec.tls[].secretName`` Secrets add certificates to the TLS entrypoints (SNI picks them; ``tls.py``).

Annotations (prefix ``a3s.io/``): ``router.middlewares`` (comma-separated names; a bare name of a ``Middleware``
object in the Ingress's namespace is that object, ``crd.py``), ``router.entrypoints``,
``router.priority`` (overrides the computed one), ``service.scheme`` (``http``/``https``/``h2c``),
``service.sticky.cookie`` (a cookie name turns on sticky sessions), ``service.strategy``.
"""

from __future__ import annotations

import re
from typing import Any

from .crd import middleware_ref
from .endpoints import UNAVAILABLE, BackendError, NoReadyEndpoints, servers, service_port
from .part import PROVIDER, Part, safe
from .tls import secret_pair
from .watch import Reflector

ANNOTATION = "a3s.io/"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
SCHEMES = ("http", "https", "h2c")


def precedence(host_rank: int, path: str, exact: bool) -> int:
    """Exact host (2) > wildcard host (1) > none (0); then the longer path; then Exact over Prefix."""
    return host_rank * 1_000_000 + len(path) * 10 + (5 if exact else 0) + 2


def host_matcher(host: str) -> tuple[str, int]:
    """The rule for an Ingress host and its rank (``priority``)."""
    if host.startswith("*."):
        return f"HostRegexp(`^[^.]+{re.escape(host[1:])}$`)", 1
    return f"Host(`{host}`)", 2


def path_matcher(path: str, path_type: str) -> tuple[str, str]:
    """The rule for an Ingress path and the path used for precedence."""
    if path_type == "Exact":
        return f"Path(`{path}`)", path
    trimmed = path.rstrip("/")
    if not trimmed:
        return "PathPrefix(`/`)", "/"
    return f"(Path(`{trimmed}`) || PathPrefix(`{trimmed}/`))", trimmed


def our_classes(classes: Reflector, controller: str) -> tuple[set[str], bool]:
    """Our IngressClass names, and whether one of them is the cluster's default."""
    ours = {c["metadata"]["name"] for c in classes.objects() if (c.get("spec") or {}).get("controller") == controller}
    default = any(c["metadata"]["name"] in ours
                  and (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
                  for c in classes.objects())
    return ours, default


def is_ours(ingress: dict[str, Any], ours: set[str], default: bool, legacy_class: str) -> bool:
    spec_class = (ingress.get("spec") or {}).get("ingressClassName")
    annotation = (ingress["metadata"].get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
    if spec_class:
        return spec_class in ours
    if annotation:
        return annotation == legacy_class
    return default


class IngressTranslator:
    def __init__(self, settings: dict[str, Any], stores: dict[str, Reflector]) -> None:
        self.settings = settings
        self.stores = stores
        self._ranked: list[tuple[int, dict[str, Any]]] = []     # (precedence, router) to number in ``parts``

    def parts(self) -> list[Part]:
        ours, default = our_classes(self.stores["IngressClass"], self.settings["ingress_controller"])
        ingresses = [i for i in self.stores["Ingress"].objects()
                     if is_ours(i, ours, default, self.settings["ingress_class"])]
        out = [self._ingress(i) for i in ingresses]
        ranks = {p: r for r, p in enumerate(sorted({p for p, _router in self._ranked}), 2)}
        for value, router in self._ranked:
            router["priority"] = ranks[value]
        with_default = sorted((i for i in ingresses if (i.get("spec") or {}).get("defaultBackend")),
                              key=lambda i: (i["metadata"].get("creationTimestamp") or "",
                                             i["metadata"]["namespace"], i["metadata"]["name"]))
        for extra in with_default[1:]:
            meta = extra["metadata"]
            part = next(p for p in out if p.source == f"Ingress {meta['namespace']}/{meta['name']}")
            part.errors.append("defaultBackend ignored: the oldest Ingress with one, "
                               f"{with_default[0]['metadata']['namespace']}/{with_default[0]['metadata']['name']}, "
                               "has it")
            part.routers.pop(f"{safe(meta['namespace'], meta['name'], 'default')}@{PROVIDER}", None)
        return out

    def _ingress(self, ingress: dict[str, Any]) -> Part:
        meta, spec = ingress["metadata"], ingress.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        part = Part(f"Ingress {ns}/{name}")
        notes = {k[len(ANNOTATION):]: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(ANNOTATION)}
        try:
            router_base = self._router_options(notes, ns)
        except ValueError as e:
            part.errors.append(str(e))
            return part
        for i, rule in enumerate(spec.get("rules") or []):
            host = rule.get("host")
            host_rule, rank = host_matcher(host) if host else ("", 0)
            for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
                path_rule, precedence_path = path_matcher(path.get("path") or "/", path.get("pathType") or "Prefix")
                exact = path.get("pathType") == "Exact"
                self._route(part, ns, notes, router_base, f"{safe(ns, name, i, j)}@{PROVIDER}",
                            " && ".join(filter(None, (host_rule, path_rule))),
                            precedence(rank, precedence_path, exact), path.get("backend") or {},
                            f"rules[{i}].http.paths[{j}]")
        if spec.get("defaultBackend"):
            self._route(part, ns, notes, router_base, f"{safe(ns, name, 'default')}@{PROVIDER}", "PathPrefix(`/`)",
                        None, spec["defaultBackend"], "defaultBackend")
        for k, tls in enumerate(spec.get("tls") or []):
            if not tls.get("secretName"):
                continue
            try:
                part.certificates.append(secret_pair(self.stores["Secret"].get(ns, tls["secretName"]), ns,
                                                     tls["secretName"]))
            except BackendError as e:
                part.errors.append(f"tls[{k}]: {e}")
        return part

    def _router_options(self, notes: dict[str, str], ns: str) -> dict[str, Any]:
        out: dict[str, Any] = {"entrypoints": list(self.settings["entrypoints"]), "middlewares": []}
        if notes.get("router.entrypoints"):
            out["entrypoints"] = [e.strip() for e in notes["router.entrypoints"].split(",") if e.strip()]
        if notes.get("router.middlewares"):
            out["middlewares"] = [middleware_ref(m.strip(), ns, self.stores.get("Middleware"))
                                  for m in notes["router.middlewares"].split(",") if m.strip()]
        if notes.get("router.priority"):
            try:
                out["priority"] = int(notes["router.priority"])
            except ValueError:
                raise ValueError(f"annotation {ANNOTATION}router.priority: '{notes['router.priority']}' is not "
                                 "an integer") from None
        scheme = notes.get("service.scheme", "http")
        if scheme not in SCHEMES:
            raise ValueError(f"annotation {ANNOTATION}service.scheme: '{scheme}' is not one of {', '.join(SCHEMES)}")
        return out

    def _route(self, part: Part, ns: str, notes: dict[str, str], base: dict[str, Any], router: str, rule: str,
               prio: int | None, backend: dict[str, Any], where: str) -> None:
        """One path's router (``prio``: its precedence, numbered later; None: the default backend, priority 1)."""
        svc = backend.get("service")
        if not svc:
            part.errors.append(f"{where}: only service backends are supported")
            return
        port_ref = svc.get("port") or {}
        port: int | str = port_ref.get("number") or port_ref.get("name") or ""
        try:
            urls = servers(self.stores["Service"], self.stores["EndpointSlice"], ns, svc["name"], port,
                           notes.get("service.scheme", "http"))
            service_obj = self.stores["Service"].get(ns, svc["name"])
            number = port if isinstance(port, int) or service_obj is None else service_port(service_obj, port)["port"]
        except NoReadyEndpoints as e:
            part.errors.append(f"{where}: {e} (answers 503)")
            service, urls = UNAVAILABLE, []
        except BackendError as e:
            part.errors.append(f"{where}: {e}")
            return
        if urls:
            service = f"{safe(ns, svc['name'], number)}@{PROVIDER}"
            lb: dict[str, Any] = {"servers": [{"url": u} for u in urls]}
            if notes.get("service.sticky.cookie"):
                lb["sticky"] = {"cookie": notes["service.sticky.cookie"]}
            if notes.get("service.strategy"):
                lb["strategy"] = notes["service.strategy"]
            part.services[service] = {"load_balancer": lb}
        part.routers[router] = {"rule": rule, "service": service, "priority": base.get("priority", 1),
                                "entrypoints": base["entrypoints"], "middlewares": base["middlewares"]}
        if prio is not None and "priority" not in base:
            self._ranked.append((prio, part.routers[router]))
