"""Browser sessions for the dashboard: the admin token, typed once into a login form, becomes a random session id
in an ``HttpOnly; SameSite=Strict`` cookie, so the token never sits in the browser and a person needs no header.

A session remembers a digest of the token it was opened with: changing ``admin.token`` (a reload) ends every
session. Each session has its own CSRF token, which the one state-changing form (reload) must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "a3s_dashboard"
TTL_S = 8 * 3600.0
MAX_SESSIONS = 256


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of what a person typed (or a Bearer header) with the configured token."""
    return hmac.compare_digest(given.encode(), token.encode())


@dataclass
class Session:
    csrf: str
    token_digest: bytes
    expires: float


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def open(self, token: str) -> str:
        """A new session id for a correct token (the oldest session goes when there are too many)."""
        now = time.monotonic()
        self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
        while len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = Session(secrets.token_urlsafe(32), _digest(token), now + TTL_S)
        return sid

    def get(self, sid: str | None, token: str) -> Session | None:
        """The live session behind a cookie value, if it was opened with the current token."""
        s = self._by_id.get(sid or "")
        if s is None or s.expires <= time.monotonic() or not hmac.compare_digest(s.token_digest, _digest(token)):
            return None
        return s
