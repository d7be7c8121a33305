"""Config keys of the AI-agent extensions: the ``channel-webhook``, ``privacy-router``, ``token-meter``,
``priority``, ``ai-provider``, ``ai-fallback``, ``semantic-cache`` and ``prompt-guard`` middleware types (registered
in ``middleware_types.py``) and the ``affinity`` / ``agent_health`` tables of ``[services.<name>.load_balancer]``.
Behaviour: README "AI agent extensions" and each module."""

from __future__ import annotations

import base64
import re
from typing import Any

from ..vocabulary import DETECTOR_KINDS, KEY_KINDS, LEVELS, PRIORITIES
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
    join,
    path_error,
    regex_error,
    url_check,
)

PLATFORMS = ("slack", "discord", "telegram", "feishu", "lark", "dingtalk", "wecom", "wechat", "webchat", "web")
PRIORITY_NAMES = (*PRIORITIES, "besteffort", *(str(i) for i in range(len(PRIORITIES))))   # what parse_priority takes
_POSITIVE = Duration(check=lambda s: None if s > 0 else "must be greater than 0")


def _hex_key_error(text: str) -> str | None:
    return None if re.fullmatch(r"[0-9a-fA-F]{64}", text) else "must be the 32-byte Ed25519 public key in hex"


def _aes_key_error(text: str) -> str | None:
    try:
        ok = len(text) == 43 and len(base64.b64decode(text + "=")) == 32
    except ValueError:
        ok = False
    return None if ok else "must be the 43-character EncodingAESKey"


_NEEDS = {"slack": ("secret",), "discord": ("public_key",), "telegram": ("secret",), "dingtalk": ("secret",),
          "wecom": ("token", "encoding_aes_key"), "wechat": ("token", "encoding_aes_key")}


def _webhook_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    platform = out.get("platform")
    for key in _NEEDS.get(platform, ()):  # type: ignore[arg-type]
        if not out.get(key):
            rep.add(join(path, key), f"platform '{platform}' needs '{key}' to verify its webhooks")
    if platform in ("feishu", "lark") and not (out.get("token") or out.get("encrypt_key")):
        rep.add(join(path, "token"), "platform 'feishu' needs 'token' (verification token) and/or 'encrypt_key'")


CHANNEL_WEBHOOK = Table(
    {
        "platform": Field(Str(choices=PLATFORMS), required=True),
        "secret": Field(Nullable(Str(nonempty=True))),
        "public_key": Field(Nullable(Str(check=_hex_key_error))),
        "token": Field(Nullable(Str(nonempty=True))),
        "encrypt_key": Field(Nullable(Str(nonempty=True))),
        "encoding_aes_key": Field(Nullable(Str(check=_aes_key_error))),
        "receive_id": Field(Nullable(Str(nonempty=True))),
        "max_age": Field(_POSITIVE, 300.0),
        "max_body_bytes": Field(Int(minimum=1), 1048576),
        "ack": Field(Str(choices=("backend", "immediate")), "backend"),
        "signature_header": Field(Str(check=header_name_error), "X-Webchat-Signature"),
        "timestamp_header": Field(Str(check=header_name_error), "X-Webchat-Timestamp"),
    },
    post=_webhook_post,
)

PRIVACY_ROUTER = Table(
    {
        "tee_service": Field(Str(nonempty=True), required=True),
        "tee_threshold": Field(Str(choices=LEVELS), "confidential"),
        "sensitive_keywords": Field(ListOf(Str(nonempty=True)), []),
        "sensitive_patterns": Field(ListOf(Str(check=regex_error)), []),
        "inspect_headers": Field(ListOf(Str(check=header_name_error)), []),
        "max_inspect_bytes": Field(Int(minimum=1), 65536),
        "redact": Field(Bool(), False),
        "privacy_header": Field(Str(check=header_name_error), "X-Privacy-Level"),
    }
)

_BUDGET = Table({"max_tokens": Field(Nullable(Int(minimum=1))),
                 "max_cost": Field(Nullable(Number(minimum=0, exclusive_minimum=True))),
                 "window": Field(Nullable(_POSITIVE))})
_PRICE = Table({"input": Field(Number(minimum=0), required=True), "output": Field(Number(minimum=0), required=True)})
METER_KINDS = tuple(k for k in KEY_KINDS if k != "global")      # the kinds an override names as kind:<id>


def _meter_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if out.get("measure") == "cost":
        if out.get("max_cost") is None:
            rep.add(join(path, "max_cost"), "measure = 'cost' needs 'max_cost' (per window, in currency units)")
        if not out.get("prices"):
            rep.add(join(path, "prices"), "measure = 'cost' needs 'prices' (per million input/output tokens)")
    elif out.get("max_tokens") is None:
        rep.add(join(path, "max_tokens"), "is required (or set measure = 'cost' and 'max_cost')")


TOKEN_METER = Table(
    {
        "max_tokens": Field(Nullable(Int(minimum=1))),
        "max_cost": Field(Nullable(Number(minimum=0, exclusive_minimum=True))),
        "measure": Field(Str(choices=("total", "input", "output", "cost")), "total"),
        "prices": Field(MapOf(_PRICE), {}),
        "window": Field(_POSITIVE, 60.0),
        "keys": Field(ListOf(Str(choices=KEY_KINDS)), ["user", "agent", "session", "global"]),
        "limits": Field(MapOf(_BUDGET, key_check=lambda k: None if k in KEY_KINDS else
                              f"must be one of {', '.join(KEY_KINDS)}"), {}),
        "overrides": Field(MapOf(_BUDGET, key_check=lambda k: None if k == "global" or (
                                     k.split(":", 1)[0] in METER_KINDS and ":" in k) else
                                 "must be '<kind>:<id>' (kind: " + ", ".join(METER_KINDS) + ") or 'global'"), {}),
        "user_header": Field(Str(check=header_name_error), "X-User-Id"),
        "agent_header": Field(Str(check=header_name_error), "X-Agent-Id"),
        "session_header": Field(Str(check=header_name_error), "X-Session-Id"),
        "key_header": Field(Str(check=header_name_error), "Authorization"),
        "team_header": Field(Str(check=header_name_error), "X-Team-Id"),
        "chars_per_token": Field(Int(minimum=1), 4),
        "output_reserve": Field(Int(minimum=0), 0),
        "max_parse_bytes": Field(Int(minimum=1), 1048576),
        "redis_url": Field(Nullable(Str(check=url_check("redis", "rediss")))),
        "timeout_ms": Field(Int(minimum=1), 100),
    },
    post=_meter_post,
)

def _provider_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if (out.get("api_key") is None) == (out.get("api_key_env") is None):
        rep.add(join(path, "api_key"), "set exactly one of 'api_key' and 'api_key_env'")


_PROVIDER_KEYS = {
    "api_key": Field(Nullable(Str(nonempty=True))),
    "api_key_env": Field(Nullable(Str(check=lambda s: None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s)
                                      else "must be an environment variable name"))),
    "header": Field(Nullable(Str(check=header_name_error))),
    "scheme": Field(Nullable(Str())),
    "format": Field(Str(choices=("openai", "anthropic")), "openai"),
}

AI_PROVIDER = Table({"models": Field(MapOf(Str(nonempty=True)), {}), **_PROVIDER_KEYS}, post=_provider_post)

MAX_TARGETS = 8                                   # the plane's attempt counters (plane/middlewares.py)

AI_TARGET = Table(
    {
        "service": Field(Str(nonempty=True), required=True),
        "model": Field(Nullable(Str(nonempty=True))),
        "max_input_tokens": Field(Nullable(Int(minimum=1))),
        **_PROVIDER_KEYS,
    },
    post=_provider_post,
)

def _fallback_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if len(out.get("targets") or ()) > MAX_TARGETS:
        rep.add(join(path, "targets"), f"lists {len(out['targets'])} targets; at most {MAX_TARGETS} are allowed")


AI_FALLBACK = Table(
    {
        "targets": Field(ListOf(AI_TARGET, min_items=1), required=True),
        "max_attempts": Field(Int(minimum=0, maximum=MAX_TARGETS), 0),
        "cooldown": Field(_POSITIVE, 30.0),
        "chars_per_token": Field(Int(minimum=1), 4),
    },
    post=_fallback_post,
)

PRIORITY = Table(
    {
        "priority_header": Field(Str(check=header_name_error), "X-Request-Priority"),
        "trust_header": Field(Bool(), True),
        "default_priority": Field(Str(choices=PRIORITY_NAMES), "normal"),
        "user_header": Field(Str(check=header_name_error), "X-User-Id"),
        "user_tiers": Field(MapOf(Str(choices=PRIORITY_NAMES)), {}),
        "high_priority_paths": Field(ListOf(Str(check=path_error)), []),
        "low_priority_paths": Field(ListOf(Str(check=path_error)), []),
        "max_concurrency": Field(Int(minimum=0), 0),
        "max_queue": Field(Int(minimum=0), 100),
        "queue_timeout_ms": Field(Int(minimum=0), 5000),
    }
)

AFFINITY = Table(
    {
        "header": Field(Str(check=header_name_error), "X-Conversation-Id"),
        "cookie": Field(Nullable(Str(check=header_name_error))),
        "ttl": Field(_POSITIVE, 1800.0),
    }
)

AGENT_HEALTH = Table(
    {
        "path": Field(Str(check=path_error), "/health"),
        "interval": Field(_POSITIVE, 5.0),
        "timeout": Field(_POSITIVE, 3.0),
        "failure_threshold": Field(Int(minimum=1), 3),
        "success_threshold": Field(Int(minimum=1), 1),
    }
)


def _env_name_error(text: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) else "must be an environment variable name"


def _embeddings_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if out.get("api_key") is not None and out.get("api_key_env") is not None:
        rep.add(join(path, "api_key"), "set at most one of 'api_key' and 'api_key_env'")


EMBEDDINGS = Table(
    {
        "url": Field(Str(check=url_check("http", "https")), required=True),
        "model": Field(Str(nonempty=True), required=True),
        "api_key": Field(Nullable(Str(nonempty=True))),
        "api_key_env": Field(Nullable(Str(check=_env_name_error))),
        "timeout": Field(_POSITIVE, 2.0),
    },
    post=_embeddings_post,
)

SEMANTIC_CACHE = Table(
    {
        "ttl": Field(_POSITIVE, 3600.0),
        "max_entries": Field(Int(minimum=1), 1000),
        "max_temperature": Field(Number(minimum=0), 0.0),
        "similarity_threshold": Field(Number(minimum=0, maximum=1, exclusive_minimum=True), 0.95),
        "tenant_headers": Field(ListOf(Str(check=header_name_error), min_items=1),
                                ["Authorization", "X-Api-Key", "Api-Key"]),
        "max_response_bytes": Field(Int(minimum=1), 262144),
        "cache_header": Field(Str(check=header_name_error), "X-Cache"),
        "embeddings": Field(Nullable(EMBEDDINGS)),
    }
)

PROMPT_GUARD = Table(
    {
        "allow_patterns": Field(ListOf(Str(check=regex_error)), []),
        "deny_patterns": Field(ListOf(Str(check=regex_error)), []),
        "detectors": Field(ListOf(Str(choices=DETECTOR_KINDS)), []),
        "messages": Field(Str(choices=("last-user", "user", "all")), "last-user"),
    }
)
