"""Gateway API v1 (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant) → routers, services, middlewares
and the status each object should have.

Ours: a GatewayClass whose ``spec.controllerName`` is ``gateway_controller``; its Gateways; the HTTPRoutes and
GRPCRoutes whose ``parentRefs`` name those Gateways (a GRPCRoute's matches are ``grpcroute.py``'s; its backends
are spoken to over h2c). A listener attaches to the gateway's entrypoints whose address port is the
listener's port (HTTP on plain entrypoints, HTTPS on TLS ones; none → ``PortUnavailable``). HTTPS listeners'
``certificateRefs`` (Secrets) add certificates; a Secret in another namespace needs a ReferenceGrant, as does a
backend Service in another namespace.

Invariants:
* one router per (route rule match, effective hostname); priorities are assigned by sorting every router on the
  normative precedence (hostname specificity, then Exact over PathPrefix over RegularExpression, the longer
  path, a method match, more header matches, more query matches, then the older route, then ``ns/name``, then
  rule order), so the order is total and the same on every rebuild;
* a backend Service with no ready endpoint resolves (``ResolvedRefs`` stays True) but answers 503, as the
  Gateway API asks; a rule whose other backends have endpoints leaves it out;
* a rule whose backend references cannot be resolved (unknown Service or port, not a Service, not granted)
  routes to ``unresolved@internal`` (500) and the route stays Accepted, with ``ResolvedRefs`` False; a rule
  with some resolvable references keeps those, the others are left out;
* a route with an unsupported filter is not Accepted (``UnsupportedValue``) and serves nothing;
* ``RequestMirror`` filters make the rule's service a ``mirroring`` service (``percent`` or ``fraction``, as a
  whole percent) around the rule's backends; a mirror whose reference cannot be resolved is left out and says so
  in ``ResolvedRefs``, the rule still serves;
* a route's status holds only our parent entries here; ``route_status`` puts them after the other
  controllers' entries as stored at write time, so another controller's status is never overwritten;
* conditions carry no ``lastTransitionTime`` here: ``status.py`` keeps the stored one while a condition does
  not change, so status is written only when it changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from ....shared.config.schema import parse_address
from .endpoints import UNAVAILABLE, BackendError, NoReadyEndpoints, servers
from .grpcroute import grpc_matcher
from .ingress import path_matcher
from .part import Part, safe
from .tls import secret_pair
from .watch import Reflector

GROUP = "gateway.networking.k8s.io"
PROVIDER = "gateway"
UNRESOLVED = "unresolved@internal"
GatewayClass = create_global_resource(GROUP, "v1", "GatewayClass", "gatewayclasses")
Gateway = create_namespaced_resource(GROUP, "v1", "Gateway", "gateways")
HTTPRoute = create_namespaced_resource(GROUP, "v1", "HTTPRoute", "httproutes")
ReferenceGrant = create_namespaced_resource(GROUP, "v1beta1", "ReferenceGrant", "referencegrants")
PATH_RANK = {"Exact": 2, "PathPrefix": 1, "RegularExpression": 0}
HEADER_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier")
SUPPORTED_FILTERS = {"HTTPRoute": (*HEADER_FILTERS, "RequestRedirect", "URLRewrite", "RequestMirror"),
                     "GRPCRoute": HEADER_FILTERS}         # mirror copies are HTTP/1.1 (services/mirroring.py)
ROUTE_KINDS = tuple(SUPPORTED_FILTERS)
BACKEND_SCHEME = {"HTTPRoute": "http", "GRPCRoute": "h2c"}        # gRPC needs HTTP/2 to the backend
WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def mirror_percent(spec: dict[str, Any]) -> int:
    """A RequestMirror's share as a whole percent: ``percent``, else ``fraction`` (default 100 %)."""
    if spec.get("percent") is not None:
        return int(spec["percent"])
    fraction = spec.get("fraction")
    if fraction:
        return round(100 * fraction.get("numerator", 0) / (fraction.get("denominator") or 100))
    return 100


def condition(kind: str, ok: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    out = {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def route_status(ours: dict[str, Any], stored: dict[str, Any] | None, controller: str) -> dict[str, Any]:
    """A route's status: the other controllers' parent entries as stored now (never touched), then ours."""
    others = [p for p in (stored or {}).get("parents") or [] if p.get("controllerName") != controller]
    return {"parents": others + ours["parents"]}


def covers(wildcard: str, host: str) -> bool:
    """``*.example.com`` covers ``a.example.com`` and ``a.b.example.com``, not ``example.com``."""
    return wildcard.startswith("*.") and host.endswith(wildcard[1:]) and len(host) > len(wildcard) - 1


def intersect(listener: str | None, hostnames: list[str]) -> list[str | None]:
    """The hostnames a route serves on a listener (``[None]``: any host; ``[]``: none in common)."""
    if not hostnames:
        return [listener]
    if listener is None:
        return list(hostnames)
    out: list[str | None] = []
    for host in hostnames:
        if host == listener or covers(listener, host):
            out.append(host)
        elif covers(host, listener):
            out.append(listener)
    return out


def host_rule(host: str | None) -> tuple[str, tuple[int, int]]:
    """The rule for an effective hostname, and its specificity (exact > wildcard > any, then longer)."""
    if host is None:
        return "", (0, 0)
    if host.startswith("*."):
        return f"HostRegexp(`^.+{re.escape(host[1:])}$`)", (1, len(host))
    return f"Host(`{host}`)", (2, len(host))


def quoted(*values: str) -> str:
    """Rule arguments; a backtick cannot be written inside one."""
    if any("`" in v for v in values):
        raise ValueError(f"a backtick in {values!r} cannot be matched")
    return ", ".join(f"`{v}`" for v in values)


@dataclass
class Listener:
    gateway: tuple[str, str]
    name: str
    port: int
    hostname: str | None
    allowed: str                                # "Same" or "All"
    entrypoints: list[str]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    attached: int = 0


@dataclass
class Entry:
    """One router before its priority is known."""
    key: tuple[Any, ...]
    part: Part
    name: str
    router: dict[str, Any]


class GatewayTranslator:
    def __init__(self, settings: dict[str, Any], stores: dict[str, Reflector], entrypoints: dict[str, Any]) -> None:
        self.settings = settings
        self.stores = stores
        self.entrypoints = entrypoints

    def parts(self) -> list[Part]:
        controller = self.settings["gateway_controller"]
        classes = [c for c in self.stores["GatewayClass"].objects()
                   if (c.get("spec") or {}).get("controllerName") == controller]
        ours = {c["metadata"]["name"] for c in classes}
        out = []
        for cls in classes:
            part = Part(f"GatewayClass {cls['metadata']['name']}")
            part.status = {"conditions": [condition("Accepted", True, "Accepted", "ours",
                                                    cls["metadata"].get("generation"))]}
            out.append(part)
        gateways = [g for g in self.stores["Gateway"].objects()
                    if (g.get("spec") or {}).get("gatewayClassName") in ours]
        listeners: dict[tuple[str, str], list[Listener]] = {}
        gateway_parts = []
        for gw in gateways:
            part = Part(f"Gateway {gw['metadata']['namespace']}/{gw['metadata']['name']}")
            listeners[(gw["metadata"]["namespace"], gw["metadata"]["name"])] = self._listeners(gw, part)
            gateway_parts.append((gw, part))
        entries: list[Entry] = []
        for kind in ROUTE_KINDS:
            for route in self.stores[kind].objects():
                part = self._route(kind, route, listeners, entries)
                if part is not None:
                    out.append(part)
        entries.sort(key=lambda e: e.key)
        for i, entry in enumerate(entries):
            entry.part.routers[entry.name] = {**entry.router, "priority": len(entries) - i + 1}
        for gw, part in gateway_parts:
            self._gateway_status(gw, part, listeners[(gw["metadata"]["namespace"], gw["metadata"]["name"])])
            out.append(part)
        return out

    # -- references
    def granted(self, from_kind: str, from_ns: str, to_kind: str, to_ns: str, to_name: str) -> bool:
        """A reference across namespaces is allowed by a ReferenceGrant in the target's namespace."""
        if from_ns == to_ns:
            return True
        for grant in self.stores["ReferenceGrant"].objects():
            if grant["metadata"]["namespace"] != to_ns:
                continue
            spec = grant.get("spec") or {}
            if any(f.get("group") == GROUP and f.get("kind") == from_kind and f.get("namespace") == from_ns
                   for f in spec.get("from") or []) and any(
                    (t.get("group") or "") == "" and t.get("kind") == to_kind and t.get("name") in (None, to_name)
                    for t in spec.get("to") or []):
                return True
        return False

    # -- gateways
    def _listeners(self, gw: dict[str, Any], part: Part) -> list[Listener]:
        ns, generation = gw["metadata"]["namespace"], gw["metadata"].get("generation")
        allowed_eps = self.settings["entrypoints"]
        out = []
        for spec in (gw.get("spec") or {}).get("listeners") or []:
            protocol = spec.get("protocol")
            policy = ((spec.get("allowedRoutes") or {}).get("namespaces") or {}).get("from") or "Same"
            listener = Listener((ns, gw["metadata"]["name"]), spec["name"], spec.get("port") or 0,
                                spec.get("hostname"), policy, [])
            out.append(listener)
            problem: tuple[str, str] | None = None
            refs_ok: tuple[bool, str, str] = (True, "ResolvedRefs", "")
            if protocol not in ("HTTP", "HTTPS"):
                problem = ("UnsupportedProtocol", f"protocol {protocol} is not served")
            elif policy not in ("Same", "All"):
                problem = ("UnsupportedValue", f"allowedRoutes.namespaces.from {policy} is not supported")
            else:
                listener.entrypoints = [
                    name for name, ep in sorted(self.entrypoints.items())
                    if ep.get("protocol", "http") == "http" and bool(ep.get("tls")) == (protocol == "HTTPS")
                    and parse_address(ep["address"])[1] == listener.port and (not allowed_eps or name in allowed_eps)]
                if not listener.entrypoints:
                    problem = ("PortUnavailable", f"no {protocol} entrypoint listens on port {listener.port}")
            if protocol == "HTTPS" and problem is None:
                refs_ok = self._certificates(ns, spec, part)
            ok = problem is None
            listener.conditions = [
                condition("Accepted", ok, "Accepted" if ok else problem[0], problem[1] if problem else "", generation),
                condition("ResolvedRefs", refs_ok[0], refs_ok[1], refs_ok[2], generation),
                condition("Programmed", ok and refs_ok[0], "Programmed" if ok and refs_ok[0] else "Invalid", "",
                          generation)]
            if not (ok and refs_ok[0]):
                listener.entrypoints = []
        return out

    def _certificates(self, ns: str, spec: dict[str, Any], part: Part) -> tuple[bool, str, str]:
        refs = ((spec.get("tls") or {}).get("certificateRefs")) or []
        if not refs:
            return False, "InvalidCertificateRef", "an HTTPS listener needs certificateRefs"
        for ref in refs:
            target_ns = ref.get("namespace") or ns
            if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
                return False, "InvalidCertificateRef", f"{ref.get('kind')} is not a Secret"
            if not self.granted("Gateway", ns, "Secret", target_ns, ref["name"]):
                return False, "RefNotPermitted", f"no ReferenceGrant for Secret {target_ns}/{ref['name']}"
            try:
                part.certificates.append(secret_pair(self.stores["Secret"].get(target_ns, ref["name"]), target_ns,
                                                     ref["name"]))
            except BackendError as e:
                return False, "InvalidCertificateRef", str(e)
        return True, "ResolvedRefs", ""

    def _gateway_status(self, gw: dict[str, Any], part: Part, listeners: list[Listener]) -> None:
        generation = gw["metadata"].get("generation")
        programmed = any(listener.entrypoints for listener in listeners)
        part.status = {
            "conditions": [condition("Accepted", True, "Accepted", "", generation),
                           condition("Programmed", programmed, "Programmed" if programmed else "Invalid", "",
                                     generation)],
            "listeners": [{"name": listener.name, "attachedRoutes": listener.attached,
                           "supportedKinds": [{"group": GROUP, "kind": kind} for kind in ROUTE_KINDS],
                           "conditions": listener.conditions} for listener in listeners]}

    # -- routes
    def _route(self, kind: str, route: dict[str, Any], listeners: dict[tuple[str, str], list[Listener]],
               entries: list[Entry]) -> Part | None:
        meta, spec = route["metadata"], route.get("spec") or {}
        ns, name, generation = meta["namespace"], meta["name"], meta.get("generation")
        part = Part(f"{kind} {ns}/{name}")
        parents: list[dict[str, Any]] = []
        hosts: dict[str | None, set[str]] = {}            # effective hostname → entrypoints
        for ref in spec.get("parentRefs") or []:
            if (ref.get("group") or GROUP) != GROUP or (ref.get("kind") or "Gateway") != "Gateway":
                continue
            key = (ref.get("namespace") or ns, ref["name"])
            if key not in listeners:
                continue                                  # not one of our Gateways: not ours to report
            accepted = self._attach(ref, ns, spec.get("hostnames") or [], listeners[key], hosts)
            parents.append({"parentRef": ref, "controllerName": self.settings["gateway_controller"],
                            "conditions": [condition("Accepted", accepted[0], accepted[1], accepted[2], generation)]})
        if not parents:
            return None
        unsupported = sorted({f.get("type") for rule in spec.get("rules") or [] for f in rule.get("filters") or []
                              if f.get("type") not in SUPPORTED_FILTERS[kind]})
        resolved: tuple[bool, str, str] = (True, "ResolvedRefs", "")
        if unsupported:
            for parent in parents:
                parent["conditions"][0] = condition("Accepted", False, "UnsupportedValue",
                                                    f"filters not supported: {', '.join(map(str, unsupported))}",
                                                    generation)
        elif hosts:
            order = (meta.get("creationTimestamp") or "", ns, name)
            for i, rule in enumerate(spec.get("rules") or []):
                rule_refs = self._rule(kind, part, route, i, rule, hosts, order, entries)
                if not rule_refs[0] and resolved[0]:
                    resolved = rule_refs
        for parent in parents:
            parent["conditions"].append(condition("ResolvedRefs", resolved[0], resolved[1], resolved[2], generation))
        part.status = {"parents": parents}
        return part

    def _attach(self, ref: dict[str, Any], ns: str, hostnames: list[str], candidates: list[Listener],
                hosts: dict[str | None, set[str]]) -> tuple[bool, str, str]:
        """Attach the route to the parent's listeners that take it; (accepted, reason, message)."""
        chosen = [li for li in candidates if ref.get("sectionName") in (None, li.name)
                  and ref.get("port") in (None, li.port)]
        if not chosen:
            return False, "NoMatchingParent", "no listener has that sectionName/port"
        chosen = [li for li in chosen if li.allowed == "All" or li.gateway[0] == ns]
        if not chosen:
            return False, "NotAllowedByListeners", "no listener allows routes from this namespace"
        attached = False
        for listener in chosen:
            effective = intersect(listener.hostname, hostnames)
            if effective and listener.entrypoints:
                listener.attached += 1
                attached = True
                for host in effective:
                    hosts.setdefault(host, set()).update(listener.entrypoints)
        if not attached:
            return False, "NoMatchingListenerHostname", "no listener hostname intersects the route's hostnames"
        return True, "Accepted", ""

    def _rule(self, kind: str, part: Part, route: dict[str, Any], i: int, rule: dict[str, Any],
              hosts: dict[str | None, set[str]], order: tuple[str, str, str],
              entries: list[Entry]) -> tuple[bool, str, str]:
        ns = route["metadata"]["namespace"]
        base = (ns, route["metadata"]["name"]) + (("grpc",) if kind == "GRPCRoute" else ())
        service, refs = self._backends(kind, part, base, i, rule.get("backendRefs") or [])
        filters = rule.get("filters") or []
        service, mirror_refs = self._mirrors(kind, part, base, i, service, filters)
        refs = refs if not refs[0] else mirror_refs
        for j, match in enumerate(rule.get("matches") or [{}]):
            try:
                matcher, rank = grpc_matcher(match, quoted) if kind == "GRPCRoute" else self._matcher(match)
                middlewares = self._filters(part, base, i, j, match, filters)
            except ValueError as e:
                part.errors.append(f"rules[{i}].matches[{j}]: {e}")
                continue
            for host in sorted(hosts, key=lambda h: h or ""):
                host_match, host_rank = host_rule(host)
                router = f"{safe(*base, i, j, host or 'any')}@{PROVIDER}"
                key = tuple(-v for v in (*host_rank, *rank)) + (*order, i, j)
                entries.append(Entry(key, part, router, {
                    "rule": " && ".join(filter(None, (host_match, matcher))), "service": service,
                    "entrypoints": sorted(hosts[host]), "middlewares": middlewares}))
        return refs

    def _matcher(self, match: dict[str, Any]) -> tuple[str, tuple[int, ...]]:
        """A match's rule and its precedence (path kind, path length, method, headers, query params)."""
        path = match.get("path") or {"type": "PathPrefix", "value": "/"}
        kind, value = path.get("type") or "PathPrefix", path.get("value") or "/"
        if kind not in PATH_RANK:
            raise ValueError(f"path type {kind} is not supported")
        quoted(value)
        if kind == "RegularExpression":
            terms = [f"PathRegexp(`(?:{value})$`)"]
        else:
            terms = [path_matcher(value, "Exact" if kind == "Exact" else "Prefix")[0]]
        for header in match.get("headers") or []:
            regex = header.get("type") == "RegularExpression"
            terms.append(f"{'HeaderRegexp' if regex else 'Header'}({quoted(header['name'], header['value'])})")
        for query in match.get("queryParams") or []:
            regex = query.get("type") == "RegularExpression"
            terms.append(f"{'QueryRegexp' if regex else 'Query'}({quoted(query['name'], query['value'])})")
        if match.get("method"):
            terms.append(f"Method({quoted(match['method'])})")
        rank = (PATH_RANK[kind], len(value), 1 if match.get("method") else 0, len(match.get("headers") or []),
                len(match.get("queryParams") or []))
        return " && ".join(terms), rank

    def _backend(self, kind: str, part: Part, route_ns: str, where: str,
                 ref: dict[str, Any]) -> tuple[str | None, tuple[str, str] | None]:
        """The service of one backend reference, or why it cannot be served ((reason, message))."""
        target_ns, port, scheme = ref.get("namespace") or route_ns, ref.get("port"), BACKEND_SCHEME[kind]
        if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
            return None, ("InvalidKind", f"{where}: {ref.get('kind')} is not a Service")
        if not self.granted(kind, route_ns, "Service", target_ns, ref["name"]):
            return None, ("RefNotPermitted", f"{where}: no ReferenceGrant for Service {target_ns}/{ref['name']}")
        if port is None:
            return None, ("UnsupportedValue", f"{where}: a Service reference needs a port")
        try:
            urls = servers(self.stores["Service"], self.stores["EndpointSlice"], target_ns, ref["name"], port, scheme)
        except NoReadyEndpoints:
            return UNAVAILABLE, None            # the reference resolves; requests get 503 until an endpoint is ready
        except BackendError as e:
            return None, ("BackendNotFound", f"{where}: {e}")
        service = f"{safe(target_ns, ref['name'], port, *([scheme] if scheme != 'http' else []))}@{PROVIDER}"
        part.services[service] = {"load_balancer": {"servers": [{"url": u} for u in urls]}}
        return service, None

    def _backends(self, kind: str, part: Part, base: tuple[str, ...], i: int,
                  refs: list[dict[str, Any]]) -> tuple[str, tuple[bool, str, str]]:
        """The service a rule routes to, and its ResolvedRefs verdict."""
        children: list[dict[str, Any]] = []
        verdict: tuple[bool, str, str] = (True, "ResolvedRefs", "")
        unavailable = False
        for k, ref in enumerate(refs):
            service, problem = self._backend(kind, part, base[0], f"backendRefs[{k}]", ref)
            if problem is not None:
                part.errors.append(f"rules[{i}].{problem[1]}")
                if verdict[0]:
                    verdict = (False, *problem)
                continue
            if service == UNAVAILABLE:
                unavailable = True
            elif ref.get("weight", 1) > 0:
                children.append({"name": service, "weight": ref.get("weight", 1)})
        if not children:
            return UNAVAILABLE if unavailable and verdict[0] else UNRESOLVED, verdict
        if len(children) == 1:
            return children[0]["name"], verdict
        weighted = f"{safe(*base, i)}@{PROVIDER}"
        part.services[weighted] = {"weighted": {"services": children}}
        return weighted, verdict

    def _mirrors(self, kind: str, part: Part, base: tuple[str, ...], i: int, service: str,
                 filters: list[dict[str, Any]]) -> tuple[str, tuple[bool, str, str]]:
        """The rule's service wrapped in a ``mirroring`` service when it has RequestMirror filters."""
        mirrors: list[dict[str, Any]] = []
        verdict: tuple[bool, str, str] = (True, "ResolvedRefs", "")
        for k, f in enumerate(filters):
            if f.get("type") != "RequestMirror":
                continue
            spec = f.get("requestMirror") or {}
            mirror, problem = self._backend(kind, part, base[0], f"filters[{k}].requestMirror.backendRef",
                                            spec.get("backendRef") or {})
            if problem is not None:
                part.errors.append(f"rules[{i}].{problem[1]}")
                if verdict[0]:
                    verdict = (False, *problem)
                continue
            if mirror == UNAVAILABLE:
                continue                        # nothing to copy to until an endpoint is ready
            mirrors.append({"name": mirror, "percent": mirror_percent(spec)})
        if not mirrors or service in (UNRESOLVED, UNAVAILABLE):
            return service, verdict
        mirroring = f"{safe(*base, i, 'mirror')}@{PROVIDER}"
        part.services[mirroring] = {"mirroring": {"service": service, "mirrors": mirrors}}
        return mirroring, verdict

    def _filters(self, part: Part, base: tuple[str, ...], i: int, j: int, match: dict[str, Any],
                 filters: list[dict[str, Any]]) -> list[str]:
        """The middlewares of a rule's filters, in order (named per match: a prefix rewrite needs the prefix)."""
        out = []
        prefix = (match.get("path") or {"type": "PathPrefix", "value": "/"})
        for k, f in enumerate(filters):
            for m, mw in enumerate(self._filter(f, prefix)):
                mw_name = f"{safe(*base, i, j, k, m)}@{PROVIDER}"
                part.middlewares[mw_name] = mw
                out.append(mw_name)
        return out

    @staticmethod
    def _filter(f: dict[str, Any], path: dict[str, Any]) -> list[dict[str, Any]]:
        kind = f["type"]
        prefix = path.get("value") or "/"
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            spec, side = f.get("requestHeaderModifier" if kind.startswith("Request") else "responseHeaderModifier") \
                or {}, "request" if kind.startswith("Request") else "response"
            return [{"type": "headers",
                     f"{side}_headers": {h["name"]: h["value"] for h in spec.get("set") or []},
                     f"add_{side}_headers": {h["name"]: h["value"] for h in spec.get("add") or []},
                     f"remove_{side}_headers": list(spec.get("remove") or [])}]
        if kind == "RequestRedirect":
            return GatewayTranslator._redirect(f.get("requestRedirect") or {}, path)
        if kind == "RequestMirror":
            return []                               # a service, not a middleware (``_mirrors``)
        spec = f.get("urlRewrite") or {}
        out: list[dict[str, Any]] = []
        if spec.get("hostname"):
            out.append({"type": "headers", "request_headers": {"Host": spec["hostname"]}})
        rewrite = spec.get("path") or {}
        if rewrite.get("type") == "ReplaceFullPath":
            out.append({"type": "replace-path", "path": rewrite.get("replaceFullPath") or "/"})
        elif rewrite.get("type") == "ReplacePrefixMatch":
            if path.get("type") != "PathPrefix":
                raise ValueError("ReplacePrefixMatch needs a PathPrefix match")
            # element-wise, as the match: /p → /x, /p/ → /x/, /p/a → /x/a (a trailing slash on either ignored)
            out.append({"type": "replace-path-regex", "regex": f"^{re.escape(prefix.rstrip('/'))}(/.*)?$",
                        "replacement": (rewrite.get("replacePrefixMatch") or "/").rstrip("/") + "$1"})
        return out

    @staticmethod
    def _redirect(spec: dict[str, Any], path: dict[str, Any]) -> list[dict[str, Any]]:
        """RequestRedirect as ``redirect-regex`` middlewares: groups 1 scheme, 2 host, 3 ``:port``, 4 the path
        (after the matched prefix for ReplacePrefixMatch), 5 the query; each part the filter does not set is kept.

        The port follows the Gateway API: a new scheme without a port gets its well-known one (none written), and
        the well-known port of the Location's scheme is never written (``http://h:80`` is ``http://h``). With a
        port of 80 or 443 and no scheme, the request's scheme decides, so a first middleware takes the requests
        of that port's own scheme and the second (never reached by them) the others."""
        rewrite = spec.get("path") or {}
        matched = ""
        if rewrite.get("type") == "ReplacePrefixMatch":
            if path.get("type") != "PathPrefix":
                raise ValueError("ReplacePrefixMatch needs a PathPrefix match")
            matched = re.escape((path.get("value") or "/").rstrip("/"))
            new_path = (rewrite.get("replacePrefixMatch") or "/").rstrip("/") + "${4}"
        elif rewrite.get("type") == "ReplaceFullPath":
            new_path = rewrite.get("replaceFullPath") or "/"
        else:
            new_path = "${4}"
        scheme, port = spec.get("scheme"), spec.get("port")

        def redirect(schemes: str, port_part: str) -> dict[str, Any]:
            return {"type": "redirect-regex",
                    "regex": f"^({schemes})://([^/:]+)(:[0-9]+)?{matched}([^?]*)(\\?.*)?$",
                    "replacement": f"{scheme or '${1}'}://{spec.get('hostname') or '${2}'}{port_part}{new_path}${{5}}",
                    "permanent": spec.get("statusCode", 302) == 301}

        if port is None:
            return [redirect("https?", "" if scheme else "${3}")]
        if scheme is not None:
            return [redirect("https?", "" if WELL_KNOWN_PORTS.get(scheme) == port else f":{port}")]
        own = {v: k for k, v in WELL_KNOWN_PORTS.items()}.get(port)
        return ([redirect(own, "")] if own else []) + [redirect("https?", f":{port}")]
