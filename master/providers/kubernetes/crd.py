"""Our CRDs, ``a3s.io/v1alpha1``: ``Route``, whose ``spec`` is this gateway's own ``routers`` / ``services`` /
``middlewares`` tables, written as in a config file, and ``Middleware``, whose ``spec`` is one middleware table
(``type`` and its keys). Every middleware and service kind is thus available from the cluster and is checked by
the same validator (``provider.py`` checks each object alone when the whole is invalid, Middlewares first).

Invariants:
* a name defined in a Route becomes ``<namespace>-<object>-<name>@crd``, and every reference inside the
  object to a name it defines (a router's ``service`` and ``middlewares``, a service of services' children, a
  middleware's ``service_keys``) is renamed with it;
* a Middleware ``<namespace>/<name>`` becomes the middleware ``<namespace>-<name>@crd``; a router's middleware
  that its Route does not define but a Middleware of the Route's namespace does (a bare name) is that one, and
  so is a bare name in an Ingress's ``a3s.io/router.middlewares`` (``middleware_ref``); any other reference
  (``name@file``, ``whoami@internal``, another namespace's ``ns-name@crd``) is kept as written, so an object may
  use the files' middlewares and services;
* a ``spec`` of the wrong shape is reported and contributes nothing;
* each generated name's place in the object (``Part.paths``) lets the validator's messages name ``spec`` keys;
* the status (``crd_status``) says whether the object is served and, if not, why — the validator's messages.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from lightkube.generic_resource import create_namespaced_resource

from ....shared.config.gateway_schema import child_services
from ....shared.config.middleware_types import MIDDLEWARE_TYPES
from .part import Part, safe
from .watch import Store

PROVIDER = "crd"
SECTIONS = ("routers", "services", "middlewares")
Route = create_namespaced_resource("a3s.io", "v1alpha1", "Route", "routes")
Middleware = create_namespaced_resource("a3s.io", "v1alpha1", "Middleware", "middlewares")
CRD_STATUS = {"Route": Route.Status, "Middleware": Middleware.Status}


def middleware_name(namespace: str, name: str) -> str:
    """The config name of the Middleware object ``namespace/name``."""
    return f"{safe(namespace, name)}@{PROVIDER}"


def middleware_ref(ref: str, namespace: str, middlewares: Store | None) -> str:
    """A middleware reference made in ``namespace``: a bare name of a Middleware there is that object."""
    if middlewares is not None and "@" not in ref and middlewares.get(namespace, ref) is not None:
        return middleware_name(namespace, ref)
    return ref


def crd_status(part: Part) -> dict[str, Any]:
    """``Route`` status: ``valid`` and the errors that left (part of) it out."""
    return {"valid": not part.errors, "errors": list(part.errors)}


class RouteTranslator:
    def __init__(self, stores: Mapping[str, Store]) -> None:
        self.stores = stores

    def parts(self) -> list[Part]:
        """The Middleware objects' parts first (the others may use them), then the Routes'."""
        return ([self._middleware(obj) for obj in self.stores["Middleware"].objects()]
                + [self._route(obj) for obj in self.stores["Route"].objects()])

    def _middleware(self, obj: dict[str, Any]) -> Part:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        part = Part(f"Middleware {ns}/{name}")
        spec = obj.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            part.errors.append("spec: a middleware table with its 'type' is required, e.g. "
                               "{type: strip-prefix, prefixes: [/api]}")
            return part
        full = middleware_name(ns, name)
        part.middlewares[full] = copy.deepcopy(spec)
        part.paths[f"middlewares.{full}"] = "spec"
        return part

    def _route(self, obj: dict[str, Any]) -> Part:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        part = Part(f"Route {ns}/{name}")
        spec = obj.get("spec") or {}
        unknown = sorted(set(spec) - set(SECTIONS))
        bad = [s for s in SECTIONS if not isinstance(spec.get(s, {}), dict)
               or not all(isinstance(v, dict) for v in spec.get(s, {}).values())]
        if unknown or bad:
            part.errors.append(f"spec: only the tables {', '.join(SECTIONS)} of named tables are allowed"
                               f" ({', '.join(unknown + bad)})")
            return part
        names = {s: {n: f"{safe(ns, name, n)}@{PROVIDER}" for n in spec.get(s, {})} for s in SECTIONS}
        part.paths = {f"{s}.{full}": f"spec.{s}.{n}" for s in SECTIONS for n, full in names[s].items()}

        def service(ref: Any) -> Any:
            return names["services"].get(ref, ref)

        for key, table in spec.get("middlewares", {}).items():
            mw = copy.deepcopy(table)
            for service_key in getattr(MIDDLEWARE_TYPES.get(mw.get("type")), "service_keys", ()):
                if service_key in mw:
                    mw[service_key] = service(mw[service_key])
            part.middlewares[names["middlewares"][key]] = mw
        for key, table in spec.get("services", {}).items():
            svc = copy.deepcopy(table)
            try:
                for _path, holder, field in child_services(svc):
                    holder[field] = service(holder[field])
            except (TypeError, KeyError, AttributeError):
                pass                        # a malformed service of services: the validator says what is wrong
            part.services[names["services"][key]] = svc
        for key, table in spec.get("routers", {}).items():
            router = copy.deepcopy(table)
            if "service" in router:
                router["service"] = service(router["service"])
            if isinstance(router.get("middlewares"), list):
                router["middlewares"] = [names["middlewares"].get(m) or middleware_ref(m, ns, self.stores["Middleware"])
                                         for m in router["middlewares"]]
            part.routers[names["routers"][key]] = router
        return part
