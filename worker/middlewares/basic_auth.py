"""``basic-auth``: HTTP Basic credentials checked against ``username``/``password`` and htpasswd ``users``.

htpasswd hashes: bcrypt (``$2y$``/``$2a$``/``$2b$``), ``{SHA}`` (base64 SHA-1) and ``$apr1$`` (Apache MD5-crypt).
Comparisons of secrets use ``hmac.compare_digest``; an unknown user is checked against a dummy secret so it
costs the same as a wrong password. bcrypt is slow by design (tens of ms per check, on the event loop), so a
successful check is remembered as a keyed digest of the credentials (bounded, per instance): a client that
sends the same valid credentials on every request pays bcrypt once.

On failure: 401 with ``WWW-Authenticate: Basic realm="..."`` and a JSON body. On success the user name can be
passed upstream in ``header_field``; the ``Authorization`` header is removed unless ``remove_header = false``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bcrypt

from ..chain import Middleware, Reply, error_reply, remove_headers

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

MISSING = "Missing Authorization header"
INVALID = "Invalid credentials"
VERIFIED_CACHE_SIZE = 1024

_APR1_ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def apr1(password: bytes, salt: bytes) -> bytes:
    """Apache's ``$apr1$`` MD5-crypt of ``password`` with ``salt`` (the full ``$apr1$salt$hash`` string)."""
    magic = b"$apr1$"
    salt = salt[:8]
    ctx = password + magic + salt
    alt = hashlib.md5(password + salt + password).digest()
    n = len(password)
    ctx += (alt * (n // 16 + 1))[:n]
    i = n
    while i:
        ctx += b"\0" if i & 1 else password[:1]
        i >>= 1
    final = hashlib.md5(ctx).digest()
    for r in range(1000):
        step = (password if r & 1 else final) + (salt if r % 3 else b"") + (password if r % 7 else b"")
        final = hashlib.md5(step + (final if r & 1 else password)).digest()
    out = bytearray()
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        v = (final[a] << 16) | (final[b] << 8) | final[c]
        for _ in range(4):
            out.append(_APR1_ALPHABET[v & 0x3F])
            v >>= 6
    v = final[11]
    for _ in range(2):
        out.append(_APR1_ALPHABET[v & 0x3F])
        v >>= 6
    return magic + salt + b"$" + bytes(out)


Verifier = Callable[[bytes], bool]


def verifier(stored: str) -> Verifier:
    """A constant-time check of a password against one stored secret (htpasswd hash or plain text)."""
    secret = stored.encode()
    if stored.startswith(("$2y$", "$2a$", "$2b$")):
        return lambda password: bcrypt.checkpw(password, secret)
    if stored.startswith("{SHA}"):
        return lambda password: hmac.compare_digest(
            base64.b64encode(hashlib.sha1(password).digest()), secret[5:])
    if stored.startswith("$apr1$"):
        salt = secret[6:].partition(b"$")[0]
        return lambda password: hmac.compare_digest(apr1(password, salt), secret)
    return lambda password: hmac.compare_digest(password, secret)


class BasicAuth(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.users: dict[bytes, Verifier] = {}
        for line in params["users"]:
            user, _, hashed = line.partition(":")
            self.users[user.encode()] = verifier(hashed)
        if params["username"] is not None:
            self.users[params["username"].encode()] = verifier(params["password"])
        self.dummy = verifier(base64.b64encode(os.urandom(16)).decode())
        self.challenge = [(b"WWW-Authenticate", b'Basic realm="%s"' % params["realm"].encode())]
        self.header_field = params["header_field"].encode() if params["header_field"] else None
        self.remove_header = params["remove_header"]
        self.cache_key = os.urandom(32)
        self.verified: dict[bytes, bytes] = {}   # digest of "user:password" -> user

    def check(self, credentials: bytes) -> bytes | None:
        """The user name when ``user:password`` credentials are valid."""
        digest = hmac.digest(self.cache_key, credentials, "sha256")
        user = self.verified.get(digest)
        if user is not None:
            return user
        user, sep, password = credentials.partition(b":")
        check = self.users.get(user, self.dummy)
        if not (sep and check(password)) or check is self.dummy:
            return None
        if len(self.verified) >= VERIFIED_CACHE_SIZE:
            self.verified.clear()
        self.verified[digest] = user
        return user

    def on_request(self, ex: Exchange) -> Reply | None:
        value = None
        for name, v in ex.headers:
            if name.lower() == b"authorization":
                value = v
                break
        if value is None or value[:6].lower() != b"basic ":
            return error_reply(401, MISSING, self.challenge)
        try:
            credentials = base64.b64decode(value[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return error_reply(401, INVALID, self.challenge)
        user = self.check(credentials)
        if user is None:
            return error_reply(401, INVALID, self.challenge)
        if self.remove_header:
            remove_headers(ex.headers, {b"authorization"})
        if self.header_field is not None:
            remove_headers(ex.headers, {self.header_field.lower()})
            ex.headers.append((self.header_field, user))
        return None
