"""Fuzzing the config loader: mutated valid configs through ``GatewayConfig.from_dict``, ``from_toml`` and
``from_yaml``. Whatever the input, a load either gives a config or raises ``ConfigError`` (never another
exception), a loaded config normalizes to itself again, and no problem message quotes a secret.

Mutations start from one valid config that uses most tables and middleware types: a value replaced (another
type, an edge value, a pathological string), a key deleted, an unknown key added, a table or list replaced;
then byte-level edits of its TOML and YAML text. Short run (CI): ``FUZZ_EXAMPLES`` (default 150) times 2 per
test. Long run: ``FUZZ_EXAMPLES=50000 pytest tests/fuzz/test_config_fuzz.py``.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
import yaml  # noqa: E402
from a3s_gateway.shared.config import ConfigError, GatewayConfig  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150")) * 2
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

SECRETS = ["jwt-SECRET-v4lue", "apikey-SECRET-1", "basic-SECRET-pw", "redisSECRETpw", "hook-SECRET-sig",
           "admin-SECRET-token"]

SEED: dict[str, Any] = {
    "entrypoints": {
        "web": {"address": "127.0.0.1:8080"},
        "tcp": {"address": "127.0.0.1:5432", "protocol": "tcp", "max_connections": 10,
                "tcp_allowed_ips": ["10.0.0.0/8"]},
    },
    "routers": {
        "api": {"rule": "Host(`api.example.com`) && PathPrefix(`/v1`)", "service": "api",
                "entrypoints": ["web"], "middlewares": ["jwt", "rl", "keys", "basic", "fa", "hdr"], "priority": 5},
        "db": {"rule": "HostSNI(`*`)", "service": "api", "entrypoints": ["tcp"]},
    },
    "services": {
        "api": {"load_balancer": {
            "strategy": "weighted", "servers": [{"url": "http://127.0.0.1:8001", "weight": 2},
                                                {"url": "http://127.0.0.1:8002"}],
            "health_check": {"path": "/health", "interval": "5s", "expected_status": "200-399"},
            "timeouts": {"response_header": "700ms"},
        }},
    },
    "middlewares": {
        "jwt": {"type": "jwt", "value": SECRETS[0], "claims_to_headers": {"sub": "X-JWT-Subject"}},
        "rl": {"type": "rate-limit-redis", "rate": 10, "burst": 5, "redis_url": f"redis://:{SECRETS[3]}@h:6379"},
        "keys": {"type": "api-key", "keys": [SECRETS[1]]},
        "basic": {"type": "basic-auth", "username": "u", "password": SECRETS[2]},
        "fa": {"type": "forward-auth", "forward_auth_url": "http://auth:9/v",
               "forward_auth_response_headers": ["X-User-Id"]},
        "hdr": {"type": "headers", "request_headers": {"X-A": "b"}},
        "hook": {"type": "channel-webhook", "platform": "slack", "secret": SECRETS[4]},
        "re": {"type": "strip-prefix-regex", "regex": ["^/v[0-9]+"]},
        "rr": {"type": "redirect-regex", "regex": "^/old/(.*)", "replacement": "/new/$1"},
        "cb": {"type": "circuit-breaker", "failure_threshold": 3},
        "ip": {"type": "ip-allow", "allowed_ips": ["10.0.0.0/8"], "trusted_proxies": ["127.0.0.1"], "depth": 1},
        "priv": {"type": "privacy-router", "tee_service": "api", "sensitive_patterns": ["\\d{16}"]},
        "tm": {"type": "token-meter", "max_tokens": 1000, "window": "1m"},
        "prio": {"type": "priority", "max_concurrency": 4, "user_tiers": {"alice": "high"}},
        "retry": {"type": "retry", "max_retries": 2, "retry_on_statuses": [502]},
    },
    "providers": {"file": {"watch": False}},
    "admin": {"address": "127.0.0.1:9090"},
    "access_log": {"enabled": True, "format": "json", "filters": {"status": ["400-599"]}, "flush_interval": "50ms"},
    "tracing": {"enabled": False},
    "limits": {"max_uri_bytes": 4096, "header_timeout": "5s"},
}

PATHOLOGICAL = [
    "(" * 3000 + ")" * 3000, "(?:" * 400 + "a" + ")" * 400, "a{99999999999999999999}", "\\", "[", "*",
    "1" * 5000, "9" * 30 + "s", "1e309s", "nan", "inf", "-1", "0", "", " ", "\x00", "é", "²", "١٢", "1_0", "0x10",
    ":99999", "[::1]:0", "999.1.1.1:80", "[zz]:80", "localhost:²", "http://", "redis://:@", "redis://a:b@[::1",
    "http://[::1", "h2c://x", "ftp://x", "200-", "-200", "599-100", "1ms2h", "5 s", "/\x00", "10.0.0.0/33",
    "X-A\r\nB", "Host(`", "${UNSET_VAR_FOR_FUZZ}", "$${", "${", "\ud800" if False else "\u2028",
]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 65536, 2**63, 10**400, 1 << 20000]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(PATHOLOGICAL), st.text(max_size=20),
    st.lists(st.sampled_from([None, 1, "x", "/a", "10.0.0.1", [], {}] + PATHOLOGICAL[:6]), max_size=3),
    st.dictionaries(st.sampled_from(["type", "url", "x", "", "address", "rule", "value"]),
                    st.sampled_from([None, 1, "x", "http://a:1", [], {}]), max_size=3),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = _paths(SEED)[1:]


STRING_EDITS = ["[", "]", "@", ":", "%", "%zz", "/", "\x00", "\r\n", " ", "(", ")", "`", "\"", "*", "?", "#", "::",
                "-", "0", "99999", "é", "\u00a0", "\\", "${X}", "{", "}", "&&", "||", "!", ",", "."]


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _set(doc: dict, path: tuple, op: str, value: Any) -> None:
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "add" and isinstance(parent[key], dict):
        parent[key][value if isinstance(value, str) else "unknown_key"] = value
    elif op == "add" and isinstance(parent[key], list):
        parent[key].append(value)
    else:
        parent[key] = value


@st.composite
def mutated(draw: st.DrawFn) -> dict:
    doc = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "edit", "edit"]))
        value = draw(VALUES)
        if op == "edit":   # a string value with a token spliced in: "http://[::1", "redis://:pw@h:9x"...
            old = _get(doc, path)
            if not isinstance(old, str):
                continue
            i = draw(st.integers(0, len(old)))
            value = old[:i] + draw(st.sampled_from(STRING_EDITS)) + old[i + draw(st.integers(0, 3)):]
            op = "replace"
        _set(doc, path, op, value)
    return doc


def _load(fn: Any, arg: Any) -> GatewayConfig | None:
    try:
        cfg = fn(arg)
    except ConfigError as e:
        text = str(e) + "".join(f"{p.path} {p.message} {p.suggestion}" for p in e.problems)
        for secret in SECRETS:
            assert secret not in text, f"secret {secret!r} quoted in a config error: {text}"
        return None
    # what loaded is valid, JSON-safe and normalizes to itself
    assert GatewayConfig.from_dict(copy.deepcopy(cfg.data)) == cfg
    json.dumps(cfg.data)
    return cfg


def test_the_seed_is_valid() -> None:
    assert _load(GatewayConfig.from_dict, copy.deepcopy(SEED)) is not None


@SETTINGS
@given(doc=mutated())
def test_mutated_dicts_only_raise_config_error(doc: dict) -> None:
    _load(GatewayConfig.from_dict, doc)


def _to_toml(value: Any) -> str:
    """A minimal TOML writer for the seed's shapes (inline tables; None has no TOML form and is left out)."""
    def v(x: Any) -> str:
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, (int, float)):
            return repr(x) if x == x and x not in (float("inf"), float("-inf")) else "nan"
        if isinstance(x, str):
            return json.dumps(x)
        if isinstance(x, list):
            return "[" + ", ".join(v(i) for i in x if i is not None) + "]"
        if isinstance(x, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {v(i)}" for k, i in x.items() if i is not None) + "}"
        return '""'
    return "\n".join(f"{json.dumps(str(k))} = {v(x)}" for k, x in value.items() if x is not None) + "\n"


SEED_TOML = _to_toml(SEED)
SEED_YAML = yaml.safe_dump(SEED)
EDIT_TOKENS = ["\n", "[", "]", "{", "}", "=", "\"", "'", ",", ":", "-", " ", "#", "\\", "&a", "*a", "!!python/object:x",
               "!!binary", "? ", "|", ">", "\t", "0x", "1e400", "${X}", "<<: *a", "%YAML 1.2\n", "---\n", "\x00"]


@st.composite
def edited(draw: st.DrawFn, seed: str) -> str:
    text = seed
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 8)))
        text = text[:i] + draw(st.one_of(st.sampled_from(EDIT_TOKENS), st.text(max_size=3))) + text[j:]
    return text


def test_the_text_seeds_are_valid() -> None:
    assert _load(GatewayConfig.from_toml, SEED_TOML) is not None
    assert _load(GatewayConfig.from_yaml, SEED_YAML) is not None


@SETTINGS
@given(text=edited(SEED_TOML))
def test_edited_toml_only_raises_config_error(text: str) -> None:
    _load(GatewayConfig.from_toml, text)


@SETTINGS
@given(text=edited(SEED_YAML))
def test_edited_yaml_only_raises_config_error(text: str) -> None:
    _load(GatewayConfig.from_yaml, text)


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000,
    "a: " + "[" * 5000 + "]" * 5000,
    "a: &a [*a]",
    "a: &a {b: *a}",
    "a = " + "9" * 5000,
    "a: " + "9" * 5000,
    # "billion laughs": 10^9 values once the aliases are expanded
    "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10)),
    "a: &x [1]\nb: [*x, *x, *x, *x]\n" * 3,
    "!!python/object/apply:os.system ['true']",
    "- 1\n- 2",
    "just a string",
    "\x00",
    "a: !!binary AAAA",
    "a: 2001-01-01",
    "? [1, 2]\n: v",
])
def test_pathological_documents_only_raise_config_error(text: str) -> None:
    _load(GatewayConfig.from_yaml, text)
    _load(GatewayConfig.from_toml, text)
