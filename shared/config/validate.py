"""Checks a raw config: schema normalization (``gateway_schema.CONFIG``) followed by cross-reference checks.

Cross-references: a router's service, entrypoints and middlewares must exist (closest name suggested), its rule
must parse (as a TCP rule when every entrypoint it names is tcp or udp), and no two listeners may claim the same
port.

Invariant: ``check`` reports every problem to the Reporter and never raises on bad input; its result is only
meaningful when no problem was reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .default import DEFAULT_SERVICE_NAMES
from .gateway_schema import CONFIG
from .schema import INVALID, Reporter, join, suggest

_WILDCARD_HOSTS = ("0.0.0.0", "::")


def check(raw: Any, rep: Reporter) -> dict[str, Any]:
    """The normalized config; problems go to ``rep``."""
    data = CONFIG.normalize(raw, "", rep)
    if data is INVALID:
        return {}
    _check_routers(data, rep)
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


def _check_routers(data: dict[str, Any], rep: Reporter) -> None:
    entrypoints = data.get("entrypoints", {})
    services = set(data.get("services", {})) | DEFAULT_SERVICE_NAMES
    middlewares = set(data.get("middlewares", {}))
    check_rule = _rule_checker()
    for name, router in data.get("routers", {}).items():
        path = join("routers", name)
        if "service" in router:
            _check_reference(rep, join(path, "service"), "service", router["service"], services)
        for i, entrypoint in enumerate(router.get("entrypoints", [])):
            _check_reference(rep, f"{path}.entrypoints[{i}]", "entrypoint", entrypoint, set(entrypoints))
        for i, middleware in enumerate(router.get("middlewares", [])):
            _check_reference(rep, f"{path}.middlewares[{i}]", "middleware", middleware, middlewares)
        if check_rule is not None and "rule" in router:
            protocols = [
                entrypoints[e].get("protocol") for e in router.get("entrypoints", []) if e in entrypoints
            ]
            kind = "tcp" if protocols and all(p in ("tcp", "udp") for p in protocols) else "http"
            message = check_rule(router["rule"], kind)
            if message:
                rep.add(join(path, "rule"), message)


def _check_listeners(data: dict[str, Any], rep: Reporter) -> None:
    """No two listeners of the same transport may bind overlapping host:port pairs."""
    listeners = [
        (join(join("entrypoints", name), "address"), ep, "udp" if ep.get("protocol") == "udp" else "tcp")
        for name, ep in data.get("entrypoints", {}).items()
    ]
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
