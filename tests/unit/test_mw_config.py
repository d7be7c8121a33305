"""Middleware config validation at load (errors name the middleware and the key) and the pure helpers the
middlewares are built on: Accept-Encoding negotiation, apr1 hashes, IP sets, redirect templates."""

from __future__ import annotations

import subprocess

import pytest
from a3s_gateway.shared.config import ConfigError, GatewayConfig
from a3s_gateway.shared.config.middleware_types import MIDDLEWARE_TYPES
from a3s_gateway.shared.ipmatch import IPSet
from a3s_gateway.worker.chain import Middleware
from a3s_gateway.worker.middlewares import middleware_class
from a3s_gateway.worker.middlewares.basic_auth import apr1
from a3s_gateway.worker.middlewares.compress import compressible, negotiate
from a3s_gateway.worker.middlewares.redirect_regex import python_template


def problems(middleware: dict[str, object]) -> set[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        GatewayConfig.from_dict({"middlewares": {"m": middleware}})
    return {(p.path, p.message) for p in e.value.problems}


@pytest.mark.parametrize("middleware,expected", [
    ({"type": "basic-auth"}, ("middlewares.m", ("basic-auth needs 'username' and 'password', or 'users' "
                                               "(htpasswd lines)"))),
    ({"type": "basic-auth", "username": "a"},
     ("middlewares.m.password", "'username' and 'password' go together: 'password' is missing")),
    ({"type": "basic-auth", "users": ["bob:plain"]},
     ("middlewares.m.users[0]", ("user 'bob': unsupported hash (expected bcrypt '$2y$'/'$2a$'/'$2b$', '{SHA}' "
                                "or '$apr1$'; plain-text passwords belong in 'username'/'password')"))),
    ({"type": "jwt"}, ("middlewares.m", ("jwt needs exactly one of 'value' (HMAC secret), 'public_key' (PEM) or "
                                        "'jwks_url'"))),
    ({"type": "jwt", "jwks_url": "https://idp/jwks"},
     ("middlewares.m.alg", ("required with 'jwks_url': pin the algorithm (e.g. 'RS256', 'ES256', 'EdDSA'); the "
                           "token's own 'alg' is never trusted"))),
    ({"type": "jwt", "value": "s", "alg": "RS256"},
     ("middlewares.m.alg", "'RS256' does not fit 'value' (HMAC secrets need HS256/HS384/HS512)")),
    ({"type": "jwt", "value": "s", "alg": "none"},
     ("middlewares.m.alg", ("must be one of 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', "
                           "'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', got 'none'"))),
    ({"type": "jwt", "public_key": "nope", "alg": "RS256"},
     ("middlewares.m.public_key", "not a PEM public key or certificate")),
    ({"type": "rate-limit", "rate": 5, "key": "cookie"},
     ("middlewares.m.key", ("must be one of 'global', 'router', 'client-ip' or 'header:<Header-Name>', "
                           "got 'cookie'"))),
    ({"type": "strip-prefix-regex", "regex": ["(unclosed"]},
     ("middlewares.m.regex[0]", ("invalid regular expression '(unclosed': missing ), unterminated subpattern at "
                                "position 0"))),
    ({"type": "ip-block", "blocked_ips": ["10.0.0.300"]},
     ("middlewares.m.blocked_ips[0]", "'10.0.0.300' is not an IP address or CIDR range")),
    ({"type": "retry", "retry_on_statuses": [404]}, ("middlewares.m.retry_on_statuses[0]", ("must be at least 500, "
                                                                                           "got 404"))),
    ({"type": "redirect-scheme", "scheme": "ftp"},
     ("middlewares.m.scheme", "must be one of 'http', 'https', got 'ftp'")),
    ({"type": "compress", "prefixes": ["/a"]},
     ("middlewares.m.prefixes", "key 'prefixes' does not apply to middleware type 'compress'")),
    ({"type": "semantic-cache", "similarity_threshold": 1.5},
     ("middlewares.m.similarity_threshold", "must be at most 1, got 1.5")),
    ({"type": "semantic-cache", "embeddings": {"url": "ftp://e", "model": "m", "api_key": "k", "api_key_env": "K"}},
     ("middlewares.m.embeddings.api_key", "set at most one of 'api_key' and 'api_key_env'")),
    ({"type": "semantic-cache", "embeddings": {"model": "m"}},
     ("middlewares.m.embeddings.url", "required key is missing")),
    ({"type": "prompt-guard", "detectors": ["cards"]},
     ("middlewares.m.detectors[0]", "must be one of 'card', 'ssn', 'secret', 'iban', 'email', 'phone', got 'cards'")),
    ({"type": "prompt-guard", "messages": "last"},
     ("middlewares.m.messages", "must be one of 'last-user', 'user', 'all', got 'last'")),
    ({"type": "ai-fallback", "targets": [{"service": "s", "api_key": "k"}] * 9},
     ("middlewares.m.targets", "lists 9 targets; at most 8 are allowed")),
    ({"type": "ai-fallback", "targets": [{"service": "s"}]},
     ("middlewares.m.targets[0].api_key", "set exactly one of 'api_key' and 'api_key_env'")),
    ({"type": "ai-fallback", "targets": [{"service": "s", "api_key": "k", "format": "gemini"}]},
     ("middlewares.m.targets[0].format", "must be one of 'openai', 'anthropic', got 'gemini'")),
    ({"type": "ai-fallback", "targets": [{"service": "s", "api_key": "k"}]},
     ("middlewares.m.targets[0].service", "unknown service 's'")),
    ({"type": "token-meter", "measure": "cost", "max_cost": 5},
     ("middlewares.m.prices", "measure = 'cost' needs 'prices' (per million input/output tokens)")),
    ({"type": "token-meter", "measure": "cost", "prices": {"*": {"input": 1, "output": 2}}},
     ("middlewares.m.max_cost", "measure = 'cost' needs 'max_cost' (per window, in currency units)")),
    ({"type": "token-meter"}, ("middlewares.m.max_tokens", "is required (or set measure = 'cost' and 'max_cost')")),
    ({"type": "token-meter", "max_tokens": 5, "overrides": {"team": {"max_tokens": 1}}},
     ("middlewares.m.overrides.team", "must be '<kind>:<id>' (kind: user, agent, session, key, team, model) or "
                                      "'global'")),
])
def test_invalid_params_are_reported_at_load_with_middleware_and_key(middleware: dict[str, object],
                                                                    expected: tuple[str, str]) -> None:
    assert expected in problems(middleware)


SHARED_MODULES = {"ip-block": "ip-allow"}
"""Types whose class lives in a sibling type's module."""


@pytest.mark.parametrize("type_name", MIDDLEWARE_TYPES)
def test_every_configurable_type_is_implemented_by_its_namesake_class(type_name: str) -> None:
    module, _, cls = MIDDLEWARE_TYPES[type_name].implementation.partition(":")
    assert module == SHARED_MODULES.get(type_name, type_name).replace("-", "_")
    assert cls == "".join(word.capitalize() for word in type_name.split("-"))
    implementation = middleware_class(type_name)
    assert issubclass(implementation, Middleware) and implementation.__name__ == cls
    assert implementation.__module__ == f"a3s_gateway.worker.middlewares.{module}"


def test_unknown_middleware_type_is_not_registered() -> None:
    assert "jwt" in MIDDLEWARE_TYPES and "no-such-type" not in MIDDLEWARE_TYPES


@pytest.mark.parametrize("accept,coding", [
    (None, None), (b"", None), (b"gzip", b"gzip"), (b"gzip, deflate, br", b"br"), (b"br;q=0, gzip", b"gzip"),
    (b"gzip;q=0.5, deflate;q=0.9", b"deflate"), (b"*", b"br"), (b"*;q=0", None), (b"br;q=0, *;q=0.1", b"gzip"),
    (b"identity", None), (b"GZIP;Q=1", b"gzip"), (b"gzip;q=bogus, deflate", b"deflate")])
def test_accept_encoding_negotiation(accept: bytes | None, coding: bytes | None) -> None:
    assert negotiate(accept) == coding


@pytest.mark.parametrize("content_type,ok", [
    (b"text/html; charset=utf-8", True), (b"application/json", True), (b"application/problem+json", True),
    (b"image/svg+xml", True), (b"text/event-stream", False), (b"image/png", False), (None, False)])
def test_compressible_content_types(content_type: bytes | None, ok: bool) -> None:
    assert compressible(content_type) is ok


@pytest.mark.parametrize("password", ["secret", "", "a" * 40, "pässword"])
def test_apr1_matches_openssl(password: str) -> None:
    expected = subprocess.run(["openssl", "passwd", "-apr1", "-salt", "Xy7.Ab/z", password], capture_output=True,
                              check=True).stdout.strip()
    assert apr1(password.encode(), b"Xy7.Ab/z") == expected


def test_ipset_v4_v6_mapped_and_garbage() -> None:
    s = IPSet(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::ffff:172.16.0.0/108"])
    assert "10.200.3.4" in s and "::ffff:10.1.1.1" in s and "192.168.1.7" in s and "2001:db8::1" in s
    assert "172.16.5.5" in s
    assert "192.168.1.8" not in s and "11.0.0.1" not in s and "2001:db9::1" not in s
    assert "not-an-ip" not in s and "" not in s
    assert not IPSet([]) and IPSet(["::1"])
    with pytest.raises(ValueError):
        IPSet(["10.0.0.0/33"])


def test_redirect_template_translates_go_group_references() -> None:
    assert python_template("https://$1/x/${name}/$2\\n") == b"https://\\g<1>/x/\\g<name>/\\g<2>\\\\n"
