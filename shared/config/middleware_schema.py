"""Key tables of the core middleware types, one ``Table`` per config ``type`` (``rate-limit`` → ``RATE_LIMIT``).

The original used one flat schema for every type and ignored keys a type does not read. Here each type accepts
only its own keys: a key that belongs to another type is reported as not applying to this one, anything else as
unknown (with a suggestion). Required keys and defaults follow the spec (§1.5, §4).

Which type uses which table is said once, in ``middleware_types.MIDDLEWARE_TYPES``; the AI-agent types' tables
are in ``ai_schema.py``. A middleware module that grows new options adds them to its table here.
"""

from __future__ import annotations

import re
from typing import Any

from .schema import (
    Bool,
    Duration,
    Field,
    Int,
    ListOf,
    MapOf,
    Nullable,
    Number,
    Reporter,
    Str,
    Table,
    header_name_error,
    header_value_error,
    ip_network_error,
    join,
    path_error,
    regex_error,
    url_check,
)


def _burst_defaults_to_rate(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if out.get("burst") is None and "rate" in out:
        out["burst"] = out["rate"]


def _rate_limit_key_error(text: str) -> str | None:
    if text in RATE_LIMIT_KEYS or (text.startswith("header:") and not header_name_error(text[7:])):
        return None
    return f"must be one of {', '.join(repr(k) for k in RATE_LIMIT_KEYS)} or 'header:<Header-Name>', got {text!r}"


def _htpasswd_error(line: str) -> str | None:
    user, sep, hashed = line.partition(":")
    if not sep or not user:
        return "htpasswd lines look like 'user:hash'"
    if not hashed.startswith(HTPASSWD_PREFIXES):
        return (f"user '{user}': unsupported hash (expected bcrypt '$2y$'/'$2a$'/'$2b$', '{{SHA}}' or "
                "'$apr1$'; plain-text passwords belong in 'username'/'password')")
    return None


def _realm_error(realm: str) -> str | None:
    return "must not contain '\"' or line breaks" if re.search(r'["\r\n]', realm) else None


def _basic_auth_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    has_user, has_password = out.get("username") is not None, out.get("password") is not None
    if has_user != has_password:
        missing = "password" if has_user else "username"
        rep.add(join(path, missing), f"'username' and 'password' go together: '{missing}' is missing")
    elif not has_user and not out.get("users") and "users" not in raw:
        rep.add(path, "basic-auth needs 'username' and 'password', or 'users' (htpasswd lines)")
    names = [line.partition(":")[0] for line in out.get("users", [])] + ([out["username"]] if has_user else [])
    for dup in sorted({n for n in names if names.count(n) > 1}):
        rep.add(join(path, "users"), f"user '{dup}' is defined twice")


_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "Ed25519 or Ed448"}


def _public_key_kind(pem: str) -> str | None:
    """'RSA', 'EC', 'Ed25519 or Ed448' for a PEM public key (or certificate); None when it does not parse."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.encode()
    try:
        key: Any = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
                    else load_pem_public_key(data))
    except ValueError:
        return None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return "Ed25519 or Ed448"
    return None


def _jwt_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    sources = [k for k in ("value", "public_key", "jwks_url") if out.get(k) is not None or raw.get(k) is not None]
    if len(sources) != 1:
        rep.add(path, "jwt needs exactly one of 'value' (HMAC secret), 'public_key' (PEM) or 'jwks_url'"
                + (f", got {', '.join(sources)}" if sources else ""))
        return
    source, alg = sources[0], out.get("alg")
    if alg is None:
        if source == "value":
            out["alg"] = "HS256"
        else:
            rep.add(join(path, "alg"), f"required with '{source}': pin the algorithm (e.g. 'RS256', 'ES256', "
                    "'EdDSA'); the token's own 'alg' is never trusted")
        return
    if (source == "value") != alg.startswith("HS"):
        rep.add(join(path, "alg"), f"'{alg}' does not fit '{source}' ("
                + ("HMAC secrets need HS256/HS384/HS512)" if source == "value" else "HS* algorithms need 'value')"))
        return
    if source == "public_key" and "public_key" in out:
        kind = _public_key_kind(out["public_key"])
        if kind is None:
            rep.add(join(path, "public_key"), "not a PEM public key or certificate")
        elif kind != _KEY_TYPES[alg[:2]]:
            rep.add(join(path, "public_key"), f"is an {kind} key, but alg '{alg}' needs {_KEY_TYPES[alg[:2]]}")


_HEADER_NAME = Str(check=header_name_error)
_HEADER_LIST = ListOf(_HEADER_NAME)
_HEADER_MAP = MapOf(Str(check=header_value_error), key_check=header_name_error)
_POSITIVE_RATE = Number(minimum=0, exclusive_minimum=True)
_OPTIONAL_BURST = Field(Nullable(_POSITIVE_RATE))  # default: the rate
_PERIOD = Field(Duration(check=lambda s: None if s > 0 else "must be greater than 0"), 1.0)
_IP_LIST = ListOf(Str(check=ip_network_error))
_PERMANENT = Field(Bool(), False)

RATE_LIMIT_KEYS = ("global", "router", "client-ip")
"""Rate-limit bucket keys: one bucket per middleware, per router, per client IP; or ``header:<Name>``."""

HTPASSWD_PREFIXES = ("$2y$", "$2a$", "$2b$", "{SHA}", "$apr1$")

JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                  "ES256", "ES384", "ES512", "EdDSA")


def _ip_filter(list_key: str) -> Table:
    return Table(
        {
            list_key: Field(ListOf(Str(check=ip_network_error), min_items=1), required=True),
            "trusted_proxies": Field(_IP_LIST, []),
            "depth": Field(Int(minimum=0), 0),
        }
    )


API_KEY = Table(
    {
        "header": Field(_HEADER_NAME, "X-API-Key"),
        "keys": Field(ListOf(Str(nonempty=True), min_items=1), required=True),
        "query_param": Field(Nullable(Str(nonempty=True))),
        "forward_key": Field(Bool(), False),
    }
)

BASIC_AUTH = Table(
    {
        "username": Field(Nullable(Str(nonempty=True))),
        "password": Field(Nullable(Str(nonempty=True))),
        "users": Field(ListOf(Str(check=_htpasswd_error)), []),
        "realm": Field(Str(nonempty=True, check=_realm_error), "a3s-gateway"),
        "header_field": Field(Nullable(_HEADER_NAME)),
        "remove_header": Field(Bool(), True),
    },
    post=_basic_auth_post,
)

JWT = Table(
    {
        "value": Field(Nullable(Str(nonempty=True))),
        "public_key": Field(Nullable(Str(nonempty=True))),
        "jwks_url": Field(Nullable(Str(check=url_check("http", "https")))),
        "jwks_refresh": Field(Duration(check=lambda s: None if s >= 1 else "must be at least 1s"), 300.0),
        "alg": Field(Nullable(Str(choices=JWT_ALGORITHMS))),
        "header": Field(_HEADER_NAME, "Authorization"),
        "cookie": Field(Nullable(_HEADER_NAME)),
        "query_param": Field(Nullable(Str(nonempty=True))),
        "leeway": Field(Duration(), 60.0),
        "require_exp": Field(Bool(), True),
        "issuer": Field(Nullable(Str(nonempty=True))),
        "audience": Field(Nullable(Str(nonempty=True))),
        "claims_to_headers": Field(MapOf(_HEADER_NAME), {"sub": "X-JWT-Subject"}),
    },
    post=_jwt_post,
)

FORWARD_AUTH = Table(
    {
        "forward_auth_url": Field(Str(check=url_check("http", "https")), required=True),
        "forward_auth_response_headers": Field(_HEADER_LIST, []),
        "forward_auth_request_headers": Field(Nullable(_HEADER_LIST)),  # null: every request header
        "timeout": Field(Duration(check=lambda s: None if s > 0 else "must be greater than 0"), 5.0),
    }
)

RATE_LIMIT = Table(
    {
        "rate": Field(_POSITIVE_RATE, required=True),
        "burst": _OPTIONAL_BURST,
        "period": _PERIOD,
        # per client by default (as nginx's limit_req by $binary_remote_addr); "global" is the original's
        "key": Field(Str(check=_rate_limit_key_error), "client-ip"),
    },
    post=_burst_defaults_to_rate,
)

RATE_LIMIT_REDIS = Table(
    {
        "rate": Field(_POSITIVE_RATE, required=True),
        "burst": _OPTIONAL_BURST,
        "period": _PERIOD,
        "key": Field(Str(check=_rate_limit_key_error), "router"),
        "redis_url": Field(Str(check=url_check("redis", "rediss")), required=True),
        "timeout_ms": Field(Int(minimum=1), 50),
    },
    post=_burst_defaults_to_rate,
)

CORS = Table(
    {
        "allowed_origins": Field(ListOf(Str(nonempty=True)), ["*"]),
        "allowed_methods": Field(_HEADER_LIST, ["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
        "allowed_headers": Field(_HEADER_LIST, ["Content-Type", "Authorization"]),
        "expose_headers": Field(_HEADER_LIST, []),
        "allow_credentials": Field(Bool(), False),
        "max_age": Field(Int(minimum=0), 86400),
    }
)

HEADERS = Table(
    {
        "request_headers": Field(_HEADER_MAP, {}),    # set (replace); "" removes, as Traefik does
        "response_headers": Field(_HEADER_MAP, {}),
        "add_request_headers": Field(_HEADER_MAP, {}),   # append
        "add_response_headers": Field(_HEADER_MAP, {}),
        "remove_request_headers": Field(_HEADER_LIST, []),
        "remove_response_headers": Field(_HEADER_LIST, []),
    }
)

STRIP_PREFIX = Table({"prefixes": Field(ListOf(Str(check=path_error), min_items=1), required=True)})

STRIP_PREFIX_REGEX = Table({"regex": Field(ListOf(Str(check=regex_error), min_items=1), required=True)})

ADD_PREFIX = Table({"prefix": Field(Str(check=path_error), required=True)})

REPLACE_PATH = Table({"path": Field(Str(check=path_error), required=True)})

REPLACE_PATH_REGEX = Table({"regex": Field(Str(check=regex_error), required=True),
                            "replacement": Field(Str(), required=True)})

REDIRECT_SCHEME = Table(
    {
        "scheme": Field(Str(choices=("http", "https")), "https"),
        "port": Field(Nullable(Int(minimum=1, maximum=65535))),
        "permanent": _PERMANENT,
    }
)

REDIRECT_REGEX = Table(
    {
        "regex": Field(Str(check=regex_error), required=True),
        "replacement": Field(Str(nonempty=True), required=True),
        "permanent": _PERMANENT,
    }
)

BODY_LIMIT = Table({"max_body_bytes": Field(Int(minimum=1), required=True)})

RETRY = Table(
    {
        "max_retries": Field(Int(minimum=1), 3),
        "retry_interval_ms": Field(Int(minimum=0), 100),
        "backoff": Field(Str(choices=("constant", "exponential")), "constant"),
        "retry_on_statuses": Field(ListOf(Int(minimum=500, maximum=599)), [502, 503, 504]),
        "replay_buffer_bytes": Field(Int(minimum=0), 65536),
        # retries in flight on the service, node-wide, stay within this share of its requests in flight
        "budget_percent": Field(Number(minimum=0, maximum=100), 20.0),
        "min_retry_concurrency": Field(Int(minimum=0), 3),
    }
)

IP_ALLOW = _ip_filter("allowed_ips")

IP_BLOCK = _ip_filter("blocked_ips")

COMPRESS = Table(
    {
        "min_bytes": Field(Int(minimum=0), 1024),
        "level": Field(Int(minimum=1, maximum=9), 6),
    }
)

def _mux_buffers_hold_a_window(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    """A client that keeps to its credit holds at most two windows and one message in a channel's buffer
    (docs/protocols/websocket-multiplexing.md): the limits must leave it that room."""
    if not all(isinstance(out.get(k), int) for k in ("window", "max_message_bytes", "max_channel_buffer",
                                                        "max_buffered_bytes")):
        return
    least = 2 * out["window"] + out["max_message_bytes"]
    if out["max_channel_buffer"] < least:
        rep.add(join(path, "max_channel_buffer"), f"must be at least 2 * window + max_message_bytes ({least}), the "
                "most a channel whose client keeps to its credit holds", f"max_channel_buffer = {least}")
    if out["max_buffered_bytes"] < out["max_channel_buffer"]:
        rep.add(join(path, "max_buffered_bytes"), "must be at least max_channel_buffer",
                f"max_buffered_bytes = {out['max_channel_buffer']}")


WEBSOCKET_MUX = Table(
    {
        "max_channels": Field(Int(minimum=1, maximum=65536), 64),
        "window": Field(Int(minimum=1024, maximum=2**31 - 1), 262144),
        "max_message_bytes": Field(Int(minimum=1024, maximum=2**30), 1048576),
        "max_channel_buffer": Field(Int(minimum=1), 2097152),
        "max_buffered_bytes": Field(Int(minimum=1), 16777216),
    },
    post=_mux_buffers_hold_a_window,
)

CIRCUIT_BREAKER = Table(
    {
        "failure_threshold": Field(Int(minimum=1), 5),
        "success_threshold": Field(Int(minimum=1), 1),
        "cooldown_secs": Field(Duration(), 30.0),
        "failure_statuses": Field(ListOf(Int(minimum=100, maximum=599)), [500, 502, 503, 504]),
    }
)

