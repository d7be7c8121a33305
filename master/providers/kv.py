"""The key layout the store providers share (etcd, Redis, Consul) and Docker labels spell with dots.

A key is ``<root>/<protocol>/<section>/<name>/<key>/…``: ``protocol`` is ``http``, ``tcp`` or ``udp`` (for the
reader: every protocol's objects go into the one ``routers``/``services``/``middlewares`` tables, as in the file
format), ``section`` one of those three. Below the name the path follows the file format: a numbered segment is a
list element (``load_balancer/servers/0/url``), any other segment a key. Keys match the file's ignoring case and
``_`` (``loadBalancer``, ``loadbalancer`` and ``load_balancer`` are one key), so Traefik's spelling works, and a
middleware may be written Traefik's way, ``middlewares/<m>/<type>/<option>``, as well as ``middlewares/<m>/type``.

Values are strings. ``coerce`` turns each into what the schema expects at its place (an integer, a number, a
boolean, a comma-separated list); a value the schema cannot take stays a string, so validation reports it with
its path like a file's.

Invariants: ``decode`` never raises on bad input — a key that names no object, or clashes with another key, is a
problem of the object it belongs to (or of no object, when it names none) and that object is left out. Names
come out as ``<name>@<provider>``, and so do references without an ``@`` (a provider's router names its own
service); ``name@file`` names the files' object. ``encode`` writes what ``decode`` reads back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...shared.config.gateway_schema import CONFIG
from ...shared.config.middleware_types import MIDDLEWARE_TYPES, MiddlewareSpec
from ...shared.config.schema import Bool, Duration, Int, ListOf, MapOf, Nullable, Number, Spec, Table

SECTIONS = ("routers", "services", "middlewares")
PROTOCOLS = ("http", "tcp", "udp")
Obj = tuple[str, str]
"""(section, qualified name): one object a provider contributes."""

_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass
class Partial:
    """What one read of a provider's source yields: the objects that decoded, where each came from (a key path
    or a container name, for messages) and the objects that did not decode, with why."""

    objects: dict[Obj, Any] = field(default_factory=dict)
    origins: dict[Obj, str] = field(default_factory=dict)
    problems: dict[Obj, str] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)
    """Problems that name no object (a key outside the layout)."""


def _section_spec(section: str) -> Spec:
    spec = CONFIG.fields[section].spec
    assert isinstance(spec, MapOf)
    return spec.value


def _squash(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _field_name(table: Table, key: str) -> str:
    """The file's name for ``key`` (``loadBalancer`` → ``load_balancer``); ``key`` itself when none matches."""
    if key in table.fields:
        return key
    squashed = _squash(key)
    return next((name for name in table.fields if _squash(name) == squashed), key)


def coerce(spec: Spec, value: Any) -> Any:
    """``value`` (a tree of strings from a store or labels, numbered keys still keys) turned into what ``spec``
    expects where it can be: the spellings of one key merged first, so ``loadBalancer/servers/1`` and
    ``loadbalancer/servers/0`` are one list's elements."""
    if isinstance(spec, Nullable):
        spec = spec.inner
    if isinstance(spec, MiddlewareSpec) and isinstance(value, dict):
        value = _traefik_middleware(value)
        kind = MIDDLEWARE_TYPES.get(value.get("type"))  # type: ignore[arg-type]
        if kind is None:
            return _lists(value)
        rest = coerce(kind.keys, {k: v for k, v in value.items() if k != "type"})
        return {"type": value["type"], **rest}
    if isinstance(spec, Table) and isinstance(value, dict):
        merged: dict[str, Any] = {}
        for key, item in value.items():     # loadBalancer/… and loadbalancer/… are one table
            name = _field_name(spec, key)
            merged[name] = _merge(merged[name], item) if name in merged else item
        out = {}
        for name, item in merged.items():
            spec_field = spec.fields.get(name)
            out[name] = coerce(spec_field.spec, item) if spec_field else _lists(item)
        return out
    if isinstance(spec, MapOf) and isinstance(value, dict):
        return {key: coerce(spec.value, item) for key, item in value.items()}
    if isinstance(spec, ListOf):
        if isinstance(value, dict) and value and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int)]
        elif isinstance(value, str) and not isinstance(spec.item, (Table, MapOf)):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return [coerce(spec.item, item) for item in value] if isinstance(value, list) else value
    if not isinstance(value, str):
        return _lists(value)
    text = value.strip()
    if isinstance(spec, Bool) and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if isinstance(spec, Int) and _INT.fullmatch(text):
        return int(text)
    if isinstance(spec, (Number, Duration)) and _NUMBER.fullmatch(text):
        return float(text)
    return value


def _merge(a: Any, b: Any) -> Any:
    """Two spellings of one key: tables are merged, otherwise the later value wins."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {**a, **{k: _merge(a[k], v) if k in a else v for k, v in b.items()}}
    return b


def _traefik_middleware(value: dict[str, Any]) -> dict[str, Any]:
    """``{rateLimit: {average: 5}}`` (Traefik's shape) → ``{type: rate-limit, average: 5}``; others unchanged."""
    if "type" in value or len(value) != 1:
        return value
    (key, options), = value.items()
    kind = next((t for t in MIDDLEWARE_TYPES if _squash(t) == _squash(key)), None)
    if kind is None or not isinstance(options, dict):
        return value
    return {"type": kind, **options}


def _lists(node: Any) -> Any:
    """Tables whose keys are all numbers become lists, in numeric order (where no spec says more)."""
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def qualify(section: str, obj: Any, provider: str) -> Any:
    """``obj`` with its references that carry no ``@`` pointed at ``provider``'s objects."""
    def own(ref: Any) -> Any:
        return f"{ref}@{provider}" if isinstance(ref, str) and "@" not in ref else ref

    if not isinstance(obj, dict):
        return obj
    obj = dict(obj)
    if section == "routers":
        if "service" in obj:
            obj["service"] = own(obj["service"])
        if isinstance(obj.get("middlewares"), list):
            obj["middlewares"] = [own(m) for m in obj["middlewares"]]
    elif section == "middlewares":
        kind = MIDDLEWARE_TYPES.get(obj.get("type"))  # type: ignore[arg-type]
        for key in kind.service_keys if kind else ():
            if key in obj:
                obj[key] = own(obj[key])
    return obj


def decode(pairs: Mapping[str, str], root: str, provider: str, sep: str = "/",
           origin: str | None = None) -> Partial:
    """The objects under ``root`` in ``pairs`` (key → string value). Messages name each object by its key
    prefix, or by ``origin`` when given (a container's name)."""
    out = Partial()
    trees: dict[Obj, dict[str, Any]] = {}
    prefix = root.rstrip(sep) + sep
    for key in sorted(pairs):
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].split(sep)
        if parts and parts[0].lower() in PROTOCOLS:
            parts = parts[1:]
        if len(parts) < 3 or parts[0].lower() not in SECTIONS or not parts[1] or "" in parts[2:]:
            out.unplaced.append(f"{origin or key}: '{key}' is not <root>/<protocol>/<routers|services|"
                                "middlewares>/<name>/<key>")
            continue
        section, name = parts[0].lower(), parts[1]
        obj = (section, f"{name}@{provider}")
        out.origins.setdefault(obj, origin or key[:len(key) - len(sep.join(parts[2:])) - len(sep)])
        if "@" in name:
            out.problems[obj] = f"'{key}': a name must not contain '@'"
            continue
        clash = _insert(trees.setdefault(obj, {}), parts[2:], pairs[key])
        if clash:
            out.problems.setdefault(obj, f"'{key}': {clash}")
    for obj, tree in trees.items():
        if obj in out.problems:
            continue
        section = obj[0]
        out.objects[obj] = qualify(section, coerce(_section_spec(section), tree), provider)
    return out


def _insert(tree: dict[str, Any], path: list[str], value: str) -> str | None:
    node = tree
    for segment in path[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            return f"'{segment}' has both a value and keys below it"
        node = child
    if isinstance(node.get(path[-1]), dict):
        return f"'{path[-1]}' has both a value and keys below it"
    node[path[-1]] = value
    return None


def _flatten(value: Any, path: list[str]) -> Iterable[tuple[list[str], str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, [*path, str(key)])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _flatten(item, [*path, str(i)])
    elif isinstance(value, bool):
        yield path, "true" if value else "false"
    elif value is not None:
        yield path, str(value)


def encode(config: Mapping[str, Any], root: str, sep: str = "/") -> dict[str, str]:
    """The keys for a file config's routers, services and middlewares (``kv export``): ``decode`` reads them
    back into the same objects. Routers whose entrypoints are all TCP (or UDP) are written under ``tcp``
    (``udp``), services by their servers' scheme, middlewares under ``http``."""
    entrypoints = config.get("entrypoints") or {}
    out: dict[str, str] = {}
    for section in reversed(SECTIONS):     # what routers name comes first, for a store being watched
        for name, obj in (config.get(section) or {}).items():
            protocol = _protocol(section, obj, entrypoints)
            for path, text in _flatten(obj, [root, protocol, section, name]):
                out[sep.join(path)] = text
    return out


def _protocol(section: str, obj: Any, entrypoints: Mapping[str, Any]) -> str:
    if section == "routers" and isinstance(obj, dict):
        kinds = {(entrypoints.get(e) or {}).get("protocol", "http") for e in obj.get("entrypoints") or ()}
        return kinds.pop() if len(kinds) == 1 and kinds <= {"tcp", "udp"} else "http"
    if section == "services" and isinstance(obj, dict):
        servers = ((obj.get("load_balancer") or {}).get("servers")) or [{}]
        scheme = str(servers[0].get("url", "")).partition("://")[0] if isinstance(servers[0], dict) else ""
        return scheme if scheme in ("tcp", "udp") else "http"
    return "http"
