"""Our CRD, ``a3s.io/v1alpha1`` ``Route``: ``spec`` is this gateway's own ``routers`` / ``services`` /
``middlewares`` tables, written as in a config file, so every middleware and service kind is available from the
cluster and is checked by the same validator (``provider.py`` checks each object alone when the whole is invalid).

Invariants:
* a name defined in the object becomes ``<namespace>-<object>-<name>@crd``, and every reference inside the
  object to a name it defines (a router's ``service`` and ``middlewares``, a service of services' children, a
  middleware's ``service_keys``) is renamed with it; any other reference (``name@file``, ``whoami@internal``) is
  kept as written, so an object may use the files' middlewares and services;
* a ``spec`` that is not those three tables of tables is reported and contributes nothing;
* the status (``crd_status``) says whether the object is served and, if not, why — the validator's messages.
"""

from __future__ import annotations

import copy
from typing import Any

from lightkube.generic_resource import create_namespaced_resource

from ....shared.config.gateway_schema import child_services
from ....shared.config.middleware_types import MIDDLEWARE_TYPES
from .part import Part, safe
from .watch import Reflector

PROVIDER = "crd"
SECTIONS = ("routers", "services", "middlewares")
Route = create_namespaced_resource("a3s.io", "v1alpha1", "Route", "routes")


def crd_status(part: Part) -> dict[str, Any]:
    """``Route`` status: ``valid`` and the errors that left (part of) it out."""
    return {"valid": not part.errors, "errors": list(part.errors)}


class RouteTranslator:
    def __init__(self, stores: dict[str, Reflector]) -> None:
        self.stores = stores

    def parts(self) -> list[Part]:
        return [self._route(obj) for obj in self.stores["Route"].objects()]

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
                router["middlewares"] = [names["middlewares"].get(m, m) for m in router["middlewares"]]
            part.routers[names["routers"][key]] = router
        return part
