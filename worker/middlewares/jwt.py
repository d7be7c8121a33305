"""``jwt``: a bearer token verified with PyJWT against one pinned algorithm; claims become request headers.

Keys: an HMAC secret (``value``), a PEM public key or certificate (``public_key``), or a JWKS document
(``jwks_url``) fetched on the event loop (never blocking it), cached, refreshed every ``jwks_refresh`` and
re-fetched at most every ``JWKS_MIN_REFETCH`` seconds when a token names an unknown ``kid``.

Invariants:
- The algorithm is the configured ``alg`` only; the token's header never chooses it (so ``none`` and
  RS256→HS256 key confusion are impossible).
- ``exp`` (required unless ``require_exp = false``) and ``nbf`` are checked with ``leeway``; ``iss``/``aud``
  when configured.
- Every header named in ``claims_to_headers`` is removed from the request before verification succeeds or
  fails, and written only from a verified token's claims, so a client cannot spoof it.
- 401 replies carry ``WWW-Authenticate: Bearer`` (``error="invalid_token"`` when a token was presented).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import aiohttp
import jwt as pyjwt
import orjson
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ...shared import log as gwlog
from ..chain import Middleware, Reply, error_reply, remove_headers
from ..hop_headers import HOP_BY_HOP
from ._support.lazy_client import LazyClient

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

JWKS_MIN_REFETCH = 10.0
JWKS_TIMEOUT = 5.0

_CHALLENGE = [(b"WWW-Authenticate", b'Bearer realm="a3s-gateway"')]
_INVALID = [(b"WWW-Authenticate", b'Bearer realm="a3s-gateway", error="invalid_token"')]


def _header_value(claim: Any) -> bytes:
    """A claim as a header value: strings as they are (unless they hold control characters), others as JSON."""
    if isinstance(claim, str) and claim.isprintable():
        return claim.encode()
    return orjson.dumps(claim)


def _public_key(pem: str) -> Any:
    """The key object of a PEM public key or certificate (validated at load)."""
    data = pem.encode()
    if b"CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return load_pem_public_key(data)


class Jwt(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.alg = params["alg"]
        self.header = params["header"].lower().encode()
        self.cookie = params["cookie"]
        self.query_param = params["query_param"]
        self.leeway = params["leeway"]
        self.issuer = params["issuer"]
        self.audience = params["audience"]
        self.options = {"require": ["exp"] if params["require_exp"] else [], "verify_aud": bool(self.audience)}
        self.claims = [(claim, header.encode()) for claim, header in params["claims_to_headers"].items()]
        self.claim_headers = frozenset(h.lower() for _, h in self.claims) - HOP_BY_HOP
        self.key: Any = None
        if params["value"] is not None:
            self.key = params["value"].encode()
        elif params["public_key"] is not None:
            self.key = _public_key(params["public_key"])
        self.jwks_url = params["jwks_url"]
        self.jwks_refresh = params["jwks_refresh"]
        self.jwks: dict[str | None, Any] = {}       # kid -> key object
        self.jwks_fetched = 0.0                     # monotonic time of the last fetch attempt
        self.jwks_task: asyncio.Task[None] | None = None
        self.session = LazyClient(lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=JWKS_TIMEOUT)),
                                  aiohttp.ClientSession.close)

    # -- token location and verification
    def token(self, ex: Exchange) -> str | None:
        for name, value in ex.headers:
            if name.lower() == self.header:
                text = value.decode("latin-1").strip()
                return text[7:].strip() if text[:7].lower() == "bearer " else text
        if self.cookie is not None:
            for name, value in ex.headers:
                if name.lower() == b"cookie":
                    morsel = SimpleCookie(value.decode("latin-1")).get(self.cookie)
                    if morsel is not None:
                        return morsel.value
        if self.query_param is not None:
            for key, value in parse_qsl(ex.target.partition(b"?")[2].decode("latin-1")):
                if key == self.query_param:
                    return value
        return None

    def verify(self, ex: Exchange, token: str, key: Any) -> Reply | None:
        try:
            claims = pyjwt.decode(token, key, algorithms=[self.alg], leeway=self.leeway, issuer=self.issuer,
                                  audience=self.audience, options=self.options)
        except pyjwt.PyJWTError as e:
            return error_reply(401, f"JWT validation failed: {type(e).__name__}", _INVALID)
        for claim, header in self.claims:
            if claim in claims:
                ex.headers.append((header, _header_value(claims[claim])))
        return None

    def on_request(self, ex: Exchange) -> Reply | Awaitable[Reply | None] | None:
        if self.claim_headers:
            remove_headers(ex.headers, self.claim_headers)
        token = self.token(ex)
        if not token:
            return error_reply(401, "Missing token", _CHALLENGE)
        if self.jwks_url is None:
            return self.verify(ex, token, self.key)
        try:
            kid = pyjwt.get_unverified_header(token).get("kid")
        except pyjwt.PyJWTError as e:
            return error_reply(401, f"JWT validation failed: {type(e).__name__}", _INVALID)
        now = time.monotonic()
        jwk = self.jwks.get(kid) if kid is not None else next(iter(self.jwks.values()), None)
        if now - self.jwks_fetched > self.jwks_refresh:
            self.refresh()                           # in the background; the cached keys answer meanwhile
        if jwk is not None:
            return self.verify(ex, token, jwk)
        if now - self.jwks_fetched < JWKS_MIN_REFETCH and self.jwks_task is None:
            return error_reply(401, "JWT validation failed: unknown signing key", _INVALID)
        return self._verify_after_fetch(ex, token, kid)

    async def _verify_after_fetch(self, ex: Exchange, token: str, kid: str | None) -> Reply | None:
        await asyncio.shield(self.refresh())
        jwk = self.jwks.get(kid) if kid is not None else next(iter(self.jwks.values()), None)
        if jwk is None:
            return error_reply(401, "JWT validation failed: unknown signing key", _INVALID)
        return self.verify(ex, token, jwk)

    # -- JWKS
    def refresh(self) -> asyncio.Task[None]:
        """The running JWKS fetch, or a new one."""
        if self.jwks_task is None:
            self.jwks_fetched = time.monotonic()
            self.jwks_task = asyncio.get_running_loop().create_task(self._fetch())
        return self.jwks_task

    def signing_keys(self, document: Any) -> dict[str | None, Any]:
        """kid -> key object for the JWKS entries usable with the pinned alg (others are skipped)."""
        keys = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if (not isinstance(entry, dict) or entry.get("alg", self.alg) != self.alg
                    or entry.get("use", "sig") != "sig"):
                continue
            try:
                keys[entry.get("kid")] = pyjwt.PyJWK(entry, algorithm=self.alg).key
            except pyjwt.PyJWTError:
                continue
        return keys

    async def _fetch(self) -> None:
        try:
            async with self.session.get().get(self.jwks_url) as resp:
                resp.raise_for_status()
                document = await resp.json(content_type=None)
            self.jwks = self.signing_keys(document)
        except (TimeoutError, aiohttp.ClientError, ValueError, pyjwt.PyJWTError) as e:
            gwlog.get("worker").warning("jwt %s: fetching JWKS from %s failed: %s", self.name, self.jwks_url, e)
        finally:
            self.jwks_task = None

    def close(self) -> None:
        self.session.close()
