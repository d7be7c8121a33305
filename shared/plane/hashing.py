"""Key fingerprints for the plane's hashed tables (rate limit, sticky).

``Fingerprinter(secret).fp(prefix, key)`` is a keyed BLAKE2b-64 of ``prefix + key`` as a signed int64 that
is never 0 (0 marks an empty entry). ``prefix`` is exactly 16 bytes (so prefix + key is unambiguous): the
rate limiter packs its limiter index and generation into it, the sticky table a constant. The 16-byte
``secret`` is drawn at create and stored in the header, so every process of one plane hashes alike
(Python's ``hash()`` is salted per process and cannot be used) while clients cannot craft keys that
collide with someone else's bucket. The keyed state is built once and ``copy()``'d per call (~0.5 µs).
"""

from __future__ import annotations

from hashlib import blake2b

_TOP = 1 << 63
_WRAP = 1 << 64
PREFIX_LEN = 16


class Fingerprinter:
    __slots__ = ("_base",)

    def __init__(self, secret: bytes) -> None:
        self._base = blake2b(digest_size=8, key=secret)

    def fp(self, prefix: bytes, key: bytes) -> int:
        h = self._base.copy()
        h.update(prefix)
        h.update(key)
        v = int.from_bytes(h.digest(), "little")
        if v >= _TOP:
            v -= _WRAP
        return v or 1
