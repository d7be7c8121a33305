"""Secret redaction for showing a config (admin API, logs, ``--check`` output).

Secrets are found by key name at any depth, so keys added later by middleware modules are covered as long as
they use a recognised name: passwords, api ``keys``, the jwt ``value``, ``secret``/``*_secret``,
``token``/``*_token``, ``users``, ``*encrypt*`` keys, and credential-bearing header names in header maps. In
every other string, a password inside a URL's userinfo is masked (``redis://:***@host:6379``).

``redact_url`` is the one helper for text that may hold a URL: log lines (``shared/log.py`` applies it to every
formatted line), error bodies, access log and trace fields, metric labels and status snapshots all go through it.

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
# The userinfo of every URL in a text: the authority runs to the first '/', '?', '#' or a character a URL cannot
# hold unescaped (whitespace, '"', '<', '>', '\\'); greedy, so the userinfo ends at its last '@' as urlsplit
# reads it ("http://u:p@ss@host" has the password "p@ss").
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#\"<>\\]*)@")


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


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    # a lone userinfo is masked whole: redis reads it as the password, other services as a token
    return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it masked (``user:***@``); a lone
    userinfo (``redis://secret@host``, ``https://token@host``) is masked whole (``***@``)."""
    if "@" not in text or "://" not in text:     # the common case, and no regex scan over long lines
        return text
    return _URL_USERINFO.sub(_mask_userinfo, text)


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


def redact_urls(value: Any) -> Any:
    """A deep copy of ``value`` (a status snapshot) with ``redact_url`` applied to every string, dict keys
    included: health-check state is keyed ``service|url``."""
    if isinstance(value, dict):
        return {redact_urls(k): redact_urls(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_urls(v) for v in value]
    return redact_url(value) if isinstance(value, str) else value
