"""Read the server name (SNI) and ALPN list from the first bytes of a TLS connection, without terminating it.

``parse(data)`` looks at what a client sent so far and answers one of:
- ``NEED_MORE``: a TLS handshake record has started but the ClientHello is not complete yet;
- ``NOT_TLS``: the bytes are not a TLS ClientHello (plain TCP, or garbage);
- a ``Hello`` with ``sni`` (lowercase, "" when absent) and ``alpn`` (list of protocol names).

Invariants: it never raises and never reads past ``data``: every length field is checked against what is
there before it is used, so truncated, oversized or hostile input only ever yields NEED_MORE or NOT_TLS. A
ClientHello split over several handshake records is reassembled; one larger than ``MAX_HELLO`` is NOT_TLS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_HELLO = 64 * 1024
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_SNI = 0
_EXT_ALPN = 16


@dataclass
class Hello:
    sni: str = ""
    alpn: list[str] = field(default_factory=list)


class _Status:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_MORE = _Status("NEED_MORE")
NOT_TLS = _Status("NOT_TLS")


class _Truncated(Exception):
    pass


class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise _Truncated
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def int(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def sub(self, length_bytes: int) -> _Reader:
        n = self.int(length_bytes)
        if self.pos + n > self.end:
            raise _Truncated
        r = _Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return r


def _handshake_bytes(data: bytes) -> bytes | _Status:
    """The handshake-layer bytes of the leading TLS records, as far as they go."""
    out = bytearray()
    pos = 0
    while pos + 5 <= len(data):
        if data[pos] != _HANDSHAKE or data[pos + 1] != 3:
            return NOT_TLS
        length = int.from_bytes(data[pos + 3: pos + 5], "big")
        if length == 0 or length > 16384 + 2048:
            return NOT_TLS
        out += data[pos + 5: pos + 5 + length]
        if pos + 5 + length > len(data):
            break
        pos += 5 + length
        if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[1:4], "big"):
            break
    if pos == 0 and len(data) < 5:
        if data[:1] not in (b"", bytes([_HANDSHAKE])) or (len(data) > 1 and data[1] != 3):
            return NOT_TLS
    return bytes(out)


def parse(data: bytes) -> Hello | _Status:
    hs = _handshake_bytes(data)
    if isinstance(hs, _Status):
        return hs
    if len(hs) < 4:
        return NEED_MORE
    if hs[0] != _CLIENT_HELLO:
        return NOT_TLS
    length = int.from_bytes(hs[1:4], "big")
    if length > MAX_HELLO:
        return NOT_TLS
    if len(hs) < 4 + length:
        return NEED_MORE if len(data) < MAX_HELLO + 1024 else NOT_TLS
    try:
        return _client_hello(_Reader(hs, 4, 4 + length))
    except _Truncated:
        return NOT_TLS                       # the lengths inside a complete message do not add up


def _client_hello(r: _Reader) -> Hello:
    hello = Hello()
    r.take(2 + 32)                           # legacy version, random
    r.sub(1)                                 # session id
    r.sub(2)                                 # cipher suites
    r.sub(1)                                 # compression methods
    if r.pos == r.end:
        return hello                         # no extensions at all
    extensions = r.sub(2)
    while extensions.pos < extensions.end:
        kind = extensions.int(2)
        body = extensions.sub(2)
        if kind == _EXT_SNI:
            names = body.sub(2)
            while names.pos < names.end:
                name_type = names.int(1)
                name = names.sub(2)
                if name_type == 0:
                    hello.sni = name.take(name.end - name.pos).decode("ascii", "replace").lower().rstrip(".")
        elif kind == _EXT_ALPN:
            protocols = body.sub(2)
            while protocols.pos < protocols.end:
                p = protocols.sub(1)
                hello.alpn.append(p.take(p.end - p.pos).decode("ascii", "replace"))
    return hello
