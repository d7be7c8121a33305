"""The config schema as OpenAPI v3 — a Kubernetes *structural* schema, for the CRDs that embed config tables.

What the API server can check is a subset of what the validator checks, and the generated schema keeps to it:
types, required keys, closed tables (an unknown key is pruned by the server, or refused by ``kubectl`` with
strict field validation), enums, bounds and minimum lengths. Cross-key rules, regexes and rules, and references
stay the gateway's own (its validator runs on every object and reports in the object's status).

Invariants (the structural-schema rules):
* every node has a ``type``, except a node that accepts more than one (a duration, a number or a string), which
  is ``x-kubernetes-preserve-unknown-fields`` with no type;
* a middleware table (``type`` picks its keys) is one object whose properties are the union of every type's
  keys; a key whose schema differs between types accepts any value there;
* a table kept as given (an executor's settings) is an object with ``x-kubernetes-preserve-unknown-fields``;
* no ``default`` is written: defaults are filled by the validator, so an object stored in the cluster holds
  only what its author wrote.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .middleware_types import MIDDLEWARE_TYPES, MiddlewareSpec
from .schema import Bool, Duration, Int, ListOf, MapOf, Nullable, Number, Spec, Str, Table
from .serving_schema import FreeTable

ANY: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


def openapi(spec: Spec) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of values ``spec`` accepts."""
    if isinstance(spec, Nullable):
        inner = openapi(spec.inner)
        return inner if inner == ANY else {**inner, "nullable": True}
    if isinstance(spec, Str):
        out: dict[str, Any] = {"type": "string"}
        if isinstance(spec.choices, Collection):
            out["enum"] = sorted(spec.choices)
        if spec.nonempty:
            out["minLength"] = 1
        return out
    if isinstance(spec, (Int, Number)):
        out = {"type": "integer" if isinstance(spec, Int) else "number"}
        if spec.minimum is not None:
            out["minimum"] = spec.minimum
            if spec.exclusive_minimum:
                out["exclusiveMinimum"] = True
        if spec.maximum is not None:
            out["maximum"] = spec.maximum
        return out
    if isinstance(spec, Bool):
        return {"type": "boolean"}
    if isinstance(spec, ListOf):
        out = {"type": "array", "items": openapi(spec.item)}
        if spec.min_items:
            out["minItems"] = spec.min_items
        return out
    if isinstance(spec, MapOf):
        return {"type": "object", "additionalProperties": openapi(spec.value)}
    if isinstance(spec, Table):
        return table(spec.fields)
    if isinstance(spec, MiddlewareSpec):
        return middleware()
    if isinstance(spec, Duration):
        return dict(ANY)
    if isinstance(spec, FreeTable):     # an executor's settings: that executor checks them, not the API server
        return {"type": "object", **ANY}
    raise TypeError(f"no OpenAPI form for {type(spec).__name__}")


def table(fields: dict[str, Any], extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A closed object of ``fields`` (``schema.Field``s), plus ``extra`` properties given as schemas."""
    properties = {key: openapi(f.spec) for key, f in fields.items()} | (extra or {})
    out: dict[str, Any] = {"type": "object", "properties": properties}
    required = sorted(key for key, f in fields.items() if f.required)
    if required:
        out["required"] = required
    return out


def middleware() -> dict[str, Any]:
    """A middleware table: ``type`` and the union of every type's keys."""
    properties: dict[str, dict[str, Any]] = {}
    for kind in MIDDLEWARE_TYPES.values():
        for key, f in kind.keys.fields.items():
            schema = openapi(f.spec)
            if properties.setdefault(key, schema) != schema:
                properties[key] = dict(ANY)
    return {"type": "object", "required": ["type"],
            "properties": {"type": {"type": "string", "enum": sorted(MIDDLEWARE_TYPES)},
                           **dict(sorted(properties.items()))}}
