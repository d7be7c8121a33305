"""Checks a raw config: schema normalization (``gateway_schema.CONFIG``) followed by cross-reference checks.

Cross-references: a router's service, entrypoints and middlewares must exist (closest name suggested), and so
must a service a middleware names (a type's ``service_keys``: privacy-router's ``tee_service``); a router's rule must
parse (as a TCP rule when every entrypoint it names is tcp or udp), and no two listeners may claim the same port.

A service or middleware reference may carry the provider that defines the object, as in Traefik: ``name@file``
for the config file and its conf.d directory, ``name@internal`` for the built-in services. A reference is stored
by the name the workers know it by (``api@file`` becomes ``api``; ``whoami@internal`` stays whole), so nothing
past validation sees a suffix. A name defined with an ``@`` in it is matched as written first.

Invariant: ``check`` reports every problem to the Reporter and never raises on bad input; its result is only
meaningful when no problem was reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..transport import LOCAL_SCHEMES
from .default import DEFAULT_SERVICE_NAMES
from .gateway_schema import CONFIG, child_services
from .middleware_types import MIDDLEWARE_TYPES
from .provider_schema import STORE_PROVIDERS
from .schema import INVALID, Reporter, join, suggest

_WILDCARD_HOSTS = ("0.0.0.0", "::")
PROVIDERS = ("file", "internal", "discovery", *STORE_PROVIDERS, "kubernetes", "gateway", "crd")
"""Providers a reference may name after '@'. Discovery's and the store providers' (master/providers/) objects are
merged after the files are checked, so the files cannot reference them; their objects may reference the files'."""


def check(raw: Any, rep: Reporter) -> dict[str, Any]:
    """The normalized config; problems go to ``rep``."""
    data = CONFIG.normalize(raw, "", rep)
    if data is INVALID:
        return {}
    _check_routers(data, rep)
    _check_services(data, rep)
    _check_listeners(data, rep)
    return data


def _rule_checker() -> Callable[[str, str], str | None] | None:
    """A function (rule, kind) -> problem message, or None while the rule grammar is not available."""
    try:
        from ..rules import RuleSyntaxError, parse_rule
    except ImportError:
        return None

    def check_rule(rule: str, kind: str) -> str | None:
        try:
            parse_rule(rule, kind=kind)
        except RuleSyntaxError as e:
            return f"invalid {kind} rule: {e}"
        return None

    return check_rule


def _check_reference(rep: Reporter, path: str, what: str, name: str, known: set[str]) -> None:
    if name not in known:
        rep.add(path, f"unknown {what} '{name}'", suggest(name, sorted(known)))


def _resolve(rep: Reporter, path: str, what: str, ref: str, defined: set[str], internal: frozenset[str] = frozenset()
             ) -> str:
    """The name ``ref`` stands for (``api@file`` → ``api``), after reporting it if it names nothing or names the
    wrong provider. ``defined``: the names in the config files; ``internal``: the built-in ones, ``@internal``
    included."""
    if ref in defined or ref in internal:
        return ref
    name, at, provider = ref.rpartition("@")
    owner = "file" if name in defined else "internal" if f"{name}@internal" in internal else None
    if not at:
        rep.add(path, f"unknown {what} '{ref}'", suggest(ref, sorted(defined | internal)))
    elif provider not in PROVIDERS:
        hint = suggest(provider, PROVIDERS)
        rep.add(path, f"unknown provider '{provider}' in '{ref}' (providers: {', '.join(PROVIDERS)})",
                f"{name}@{owner or hint}" if owner or hint else None)
    elif owner == provider:
        return name
    elif provider == "discovery":
        rep.add(path, f"'{ref}': the discovery provider's {what}s cannot be named here (its routers use its "
                "services; they are merged after the config is checked)", owner and f"{name}@{owner}")
    elif owner is None:
        rep.add(path, f"unknown {what} '{ref}': the {provider} provider defines no {what} '{name}'",
                suggest(name, sorted(defined)))
    else:
        rep.add(path, f"{what} '{name}' is defined by the {owner} provider, not by '{provider}'", f"{name}@{owner}")
    return ref


def _check_routers(data: dict[str, Any], rep: Reporter) -> None:
    entrypoints = data.get("entrypoints", {})
    services = set(data.get("services", {}))
    middlewares = set(data.get("middlewares", {}))
    check_rule = _rule_checker()
    for name, params in data.get("middlewares", {}).items():
        for key in MIDDLEWARE_TYPES[params["type"]].service_keys:
            listed, _, inner = key.partition("[].")
            tables = [(params, key, join(join("middlewares", name), key))] if not inner else [
                (t, inner, f"middlewares.{name}.{listed}[{i}].{inner}")
                for i, t in enumerate(params.get(listed) or ()) if isinstance(t, dict)]
            for table, k, path in tables:
                if k in table:
                    table[k] = _resolve(rep, path, "service", table[k], services, DEFAULT_SERVICE_NAMES)
    for name, router in data.get("routers", {}).items():
        path = join("routers", name)
        if "service" in router:
            router["service"] = _resolve(rep, join(path, "service"), "service", router["service"], services,
                                         DEFAULT_SERVICE_NAMES)
        for i, entrypoint in enumerate(router.get("entrypoints", [])):
            _check_reference(rep, f"{path}.entrypoints[{i}]", "entrypoint", entrypoint, set(entrypoints))
        router["middlewares"] = [_resolve(rep, f"{path}.middlewares[{i}]", "middleware", middleware, middlewares)
                                 for i, middleware in enumerate(router.get("middlewares", []))]
        if check_rule is not None and "rule" in router:
            protocols = [
                entrypoints[e].get("protocol") for e in router.get("entrypoints", []) if e in entrypoints
            ]
            kind = "tcp" if protocols and all(p in ("tcp", "udp") for p in protocols) else "http"
            message = check_rule(router["rule"], kind)
            if message:
                rep.add(join(path, "rule"), message)
        if any(entrypoints.get(e, {}).get("protocol") == "udp" for e in router.get("entrypoints", [])):
            _check_datagram_servers(data, name, router.get("service"), rep)


def _check_datagram_servers(data: dict[str, Any], router: str, service: Any, rep: Reporter) -> None:
    """A router on a UDP entrypoint relays datagrams: its service's unix socket and vsock servers (stream sockets
    here) cannot take them."""
    lb = (data.get("services", {}).get(service) or {}).get("load_balancer") or {}
    for i, server in enumerate(lb.get("servers") or []):
        scheme = str(server.get("url", "")).partition("://")[0].lower()
        if scheme in LOCAL_SCHEMES:
            rep.add(join(join(join("services", service), "load_balancer"), f"servers[{i}].url"),
                    f"router '{router}' relays UDP to this service, and {scheme}:// servers take streams only")


def _check_services(data: dict[str, Any], rep: Reporter) -> None:
    """A service of services names defined services (not built-in ones: those have no servers to pick), and no
    service reaches itself through its children; a cycle is reported once, with its path."""
    services = data.get("services", {})
    defined = set(services)
    children: dict[str, list[tuple[str, str]]] = {}      # name → [(child name, key path of the reference)]
    for name, svc in services.items():
        refs = children[name] = []
        for key, holder, field in child_services(svc):
            path, ref = join(join("services", name), key), holder[field]
            if ref in DEFAULT_SERVICE_NAMES:
                rep.add(path, f"'{ref}' is built in and has no servers: it cannot be a child service")
                continue
            resolved = holder[field] = _resolve(rep, path, "service", ref, defined)
            if resolved in defined:
                refs.append((resolved, path))
    reported: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in done:
            return
        for child, path in children.get(name, ()):
            if child in trail or child == name:
                cycle = trail[trail.index(child):] + [name] if child in trail else [name]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    rep.add(path, "services form a cycle: " + " → ".join([*cycle, child]))
                continue
            visit(child, [*trail, name])
        done.add(name)

    for name in children:
        visit(name, [])
    routed = {router.get("service") for router in data.get("routers", {}).values()}
    for name, svc in services.items():
        if (svc.get("failover") or {}).get("errors") is not None and name not in routed:
            rep.add(join(join(join("services", name), "failover"), "errors"),
                    "acts only on a failover that a router names; no router names this service")
        if svc.get("mirroring") is not None and name not in routed:
            rep.add(join(join("services", name), "mirroring"),
                    "mirrors only where a router names the service; no router names this service")


def _check_listeners(data: dict[str, Any], rep: Reporter) -> None:
    """No two listeners of the same transport may bind overlapping host:port pairs."""
    listeners = [
        (join(join("entrypoints", name), "address"), ep, "udp" if ep.get("protocol") == "udp" else "tcp")
        for name, ep in data.get("entrypoints", {}).items()
    ]
    listeners += [(join(join("entrypoints", name), "http3"), ep, "udp")      # its QUIC side binds UDP
                  for name, ep in data.get("entrypoints", {}).items() if ep.get("http3")]
    admin = data.get("admin", {})
    if admin.get("enabled"):
        listeners.append(("admin.address", admin, "tcp"))
    seen: list[tuple[str, dict[str, Any], str]] = []
    for path, listener, transport in listeners:
        if "port" not in listener:
            continue
        for other_path, other, other_transport in seen:
            hosts = {listener["host"], other["host"]}
            same_host = len(hosts) == 1 or bool(hosts & set(_WILDCARD_HOSTS))
            if transport == other_transport and listener["port"] == other["port"] and same_host:
                rep.add(path, f"address '{listener['address']}' is already used by {other_path}")
                break
        seen.append((path, listener, transport))
