"""Secret redaction for showing a config (admin API, logs, ``--check`` output).

Secrets are found by key name at any depth, so keys added later by middleware modules are covered as long as
they use a recognised name: passwords, api ``keys``, the jwt ``value``, ``secret``/``*_secret``,
``token``/``*_token``, ``users``, ``*encrypt*`` keys, and credential-bearing header names in header maps. In
every other string, a password inside a URL's userinfo is masked (``redis://:***@host:6379``).

Invariants: the input is not modified; a secret's value is replaced by ``"***"`` (in lists and tables each
element is masked, so the shape stays visible); null stays null.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_SECRET_NAMES = frozenset(
    {
        "password",
        "keys",
        "value",
        "secret",
        "token",
        "users",
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
    }
)
_SECRET_SUFFIXES = ("_secret", "_token", "_password", "_key", "_keys")
_URL_USERINFO = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*)(?::(?P<password>[^/@]*))?@"
)


def is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES) or "encrypt" in lowered


def _mask(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    return MASK


def redact_url(text: str) -> str:
    """``text`` with the password of a ``scheme://user:password@`` prefix masked. For redis URLs a lone
    userinfo is the password (``redis://secret@host``) and is masked too."""

    def replace(match: re.Match[str]) -> str:
        if match["password"] is not None:
            return f"{match['scheme']}{match['user']}:{MASK}@"
        if match["scheme"].lower().startswith("redis"):
            return f"{match['scheme']}{MASK}@"
        return match[0]

    return _URL_USERINFO.sub(replace, text)


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with every secret replaced by ``"***"``."""
    if isinstance(value, dict):
        return {
            k: _mask(v) if isinstance(k, str) and is_secret_key(k) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_url(value)
    return value
