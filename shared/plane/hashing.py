"""Key fingerprints for the plane's hashed tables (rate limit, sticky).

``fingerprint(key, person, secret)`` is a keyed BLAKE2b-64 of the key, as a signed int64 that is never 0
(0 marks an empty entry). The 16-byte ``secret`` is drawn at create and stored in the header, so every
process of one plane hashes alike (Python's ``hash()`` is salted per process and cannot be used) while
clients cannot craft keys that collide with someone else's bucket. ``person`` separates tables and
limiters (it carries the limiter index and its generation).
"""

from __future__ import annotations

from hashlib import blake2b

_TOP = 1 << 63
_WRAP = 1 << 64


def fingerprint(key: bytes, person: bytes, secret: bytes) -> int:
    v = int.from_bytes(blake2b(key, digest_size=8, key=secret, person=person).digest(), "little")
    if v >= _TOP:
        v -= _WRAP
    return v or 1
