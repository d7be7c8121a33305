"""Per-type key specs of ``[middlewares.<name>]`` tables, in one table keyed by middleware ``type``.

The original used one flat schema for every type and ignored keys a type does not read. Here each type accepts
only its own keys: a key that belongs to another type is reported as not applying to this one, anything else as
unknown (with a suggestion). Required keys and defaults follow the spec (§1.5, §4).

Invariants:

* ``MIDDLEWARE_TYPES`` is the single source of truth for accepted types and their keys. A middleware module that
  grows new options adds them here (``MIDDLEWARE_TYPES["cors"].fields["expose_headers"] = Field(...)``); new
  types are new entries. Type names and the "does not apply" check read the table at check time.
* A normalized middleware is ``{"type": <type>, **<every key of that type, defaults filled>}``.
"""

from __future__ import annotations

from typing import Any

from .schema import (
    INVALID,
    Duration,
    Field,
    Int,
    ListOf,
    MapOf,
    Nullable,
    Number,
    Reporter,
    Spec,
    Str,
    Table,
    header_name_error,
    header_value_error,
    ip_network_error,
    join,
    path_error,
    url_check,
)


def _burst_defaults_to_rate(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if out.get("burst") is None and "rate" in out:
        out["burst"] = out["rate"]


_HEADER_NAME = Str(check=header_name_error)
_HEADER_MAP = MapOf(Str(check=header_value_error), key_check=header_name_error)
_POSITIVE_RATE = Number(minimum=0, exclusive_minimum=True)
_OPTIONAL_BURST = Field(Nullable(_POSITIVE_RATE))  # default: the rate

MIDDLEWARE_TYPES: dict[str, Table] = {
    "api-key": Table(
        {
            "header": Field(_HEADER_NAME, "X-API-Key"),
            "keys": Field(ListOf(Str(nonempty=True), min_items=1), required=True),
        }
    ),
    "basic-auth": Table(
        {
            "username": Field(Str(nonempty=True), required=True),
            "password": Field(Str(nonempty=True), required=True),
        }
    ),
    "jwt": Table(
        {
            "value": Field(Str(nonempty=True), required=True),
            "header": Field(_HEADER_NAME, "Authorization"),
        }
    ),
    "forward-auth": Table(
        {
            "forward_auth_url": Field(Str(check=url_check("http", "https")), required=True),
            "forward_auth_response_headers": Field(ListOf(_HEADER_NAME), []),
        }
    ),
    "rate-limit": Table(
        {"rate": Field(_POSITIVE_RATE, required=True), "burst": _OPTIONAL_BURST},
        post=_burst_defaults_to_rate,
    ),
    "rate-limit-redis": Table(
        {
            "rate": Field(_POSITIVE_RATE, required=True),
            "burst": _OPTIONAL_BURST,
            "redis_url": Field(Str(check=url_check("redis", "rediss")), required=True),
        },
        post=_burst_defaults_to_rate,
    ),
    "cors": Table(
        {
            "allowed_origins": Field(ListOf(Str(nonempty=True)), ["*"]),
            "allowed_methods": Field(ListOf(_HEADER_NAME), ["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
            "allowed_headers": Field(ListOf(_HEADER_NAME), ["Content-Type", "Authorization"]),
            "max_age": Field(Int(minimum=0), 86400),
        }
    ),
    "headers": Table({"request_headers": Field(_HEADER_MAP, {}), "response_headers": Field(_HEADER_MAP, {})}),
    "strip-prefix": Table({"prefixes": Field(ListOf(Str(check=path_error), min_items=1), required=True)}),
    "body-limit": Table({"max_body_bytes": Field(Int(minimum=1), required=True)}),
    "retry": Table(
        {
            "max_retries": Field(Int(minimum=1), 3),
            "retry_interval_ms": Field(Int(minimum=0), 100),
        }
    ),
    "ip-allow": Table(
        {"allowed_ips": Field(ListOf(Str(check=ip_network_error), min_items=1), required=True)}
    ),
    "compress": Table({}),
    "circuit-breaker": Table(
        {
            "failure_threshold": Field(Int(minimum=1), 5),
            "success_threshold": Field(Int(minimum=1), 1),
            "cooldown_secs": Field(Duration(), 30.0),
            "failure_statuses": Field(ListOf(Int(minimum=100, maximum=599)), [500, 502, 503, 504]),
        }
    ),
}


class MiddlewareSpec(Spec):
    """A ``[middlewares.<name>]`` table: ``type`` picks the key table from ``MIDDLEWARE_TYPES``."""

    expected = "a table"
    _type = Str(choices=MIDDLEWARE_TYPES)

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        if not isinstance(value, dict):
            self.type_error(value, path, rep)
            return INVALID
        type_path = join(path, "type")
        if "type" not in value:
            rep.add(type_path, "required key is missing")
            return INVALID
        kind = self._type.normalize(value["type"], type_path, rep)
        if kind is INVALID:
            return INVALID

        def foreign_key(key: str) -> str | None:
            if any(key in table.fields for table in MIDDLEWARE_TYPES.values()):
                return f"key '{key}' does not apply to middleware type '{kind}'"
            return None

        rest = {k: v for k, v in value.items() if k != "type"}
        return {"type": kind, **MIDDLEWARE_TYPES[kind].convert_table(rest, path, rep, foreign_key)}


MIDDLEWARE = MiddlewareSpec()
