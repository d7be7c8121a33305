"""Message framing rules for HTTP/1.x, shared by the server side (``http1``) and the client side (``upstream``).

llhttp (through httptools, with no leniency flags set) already rejects most malformed messages: bare CR or LF,
obs-fold, whitespace before the colon, NUL/CR/LF/controls in values, non-digit or duplicate Content-Length
(even identical copies), Content-Length together with Transfer-Encoding, chunk sizes that are empty, signed,
``0x``-prefixed, padded with whitespace or overflowing, and invalid chunk extensions. What it accepts and this
module refuses (so that the gateway and the backend can never disagree about where a message ends):

- Transfer-Encoding other than exactly one ``chunked`` (case-insensitive, optional surrounding SP/HTAB):
  ``gzip, chunked``, ``,chunked`` and two TE fields are accepted by llhttp; here they are a 400 (request) or a
  502 (response). TE in an HTTP/1.0 message is a 400/502 as well (RFC 9112 §6.1: its framing is faulty).
- HTTP versions other than 1.0 and 1.1 (llhttp parses ``HTTP/0.9`` and ``HTTP/2.0`` request lines).
- A header whose name turns into a framing header when ``_`` becomes ``-`` (``Content_Length``): some
  backends (CGI-style environments) merge the two spellings.
- A Host that is not ``uri-host [":" port]`` characters.

Everything is done on bytes: ``\\xa0`` and ``\\x85`` are never whitespace here (``bytes.strip`` with explicit
SP/HTAB, ``bytes.isdigit`` is ASCII-only). Content-Length is never given to ``int()`` before it was checked to
be ASCII digits; what is forwarded is its canonical form, so leading zeros or OWS never reach a backend.
"""

from __future__ import annotations

OWS = b" \t"
MAX_CL_DIGITS = 18          # below 2**63: no overflow anywhere downstream

# Host: reg-name / IPv4 / IP-literal characters plus ":" for the port (RFC 3986 §3.2.2).
_HOST_CHARS = bytes(range(0x30, 0x3A)) + bytes(range(0x41, 0x5B)) + bytes(range(0x61, 0x7B)) + b"-._~!$&'()*+,;=:[]%"
# A reason phrase: HTAB / SP / VCHAR / obs-text (RFC 9112 §4).
_REASON_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))

# Header names that become a framing header when "_" is read as "-".
UNDERSCORE_ALIASES = frozenset((b"content_length", b"transfer_encoding"))


def content_length(value: bytes) -> bytes | None:
    """The canonical digits of a Content-Length value, or None when it is not 1*DIGIT (after OWS)."""
    v = value.strip(OWS)
    if not v or not v.isdigit() or len(v) > MAX_CL_DIGITS:
        return None
    if v[0] == 0x30 and len(v) > 1:          # leading zeros: forward the canonical number
        v = v.lstrip(b"0") or b"0"
    return v


def is_chunked(value: bytes) -> bool:
    """True when a Transfer-Encoding value is exactly ``chunked`` (the only coding the gateway accepts)."""
    return value.strip(OWS).lower() == b"chunked"


# Hosts and reason phrases already found valid: the same few values repeat on every request, so the hot path
# costs one set lookup (callers test membership first). Bounded, so arbitrary input cannot grow them.
VALID_HOSTS: set[bytes] = set()
VALID_REASONS: set[bytes] = set()
_CACHE_MAX = 4096


def valid_host(host: bytes) -> bool:
    if host.translate(None, _HOST_CHARS):
        return False
    if len(VALID_HOSTS) < _CACHE_MAX:
        VALID_HOSTS.add(host)
    return True


def underscore_alias(lname: bytes) -> bool:
    """True for a lowercased header name like ``content_length`` that some backends read as a framing header."""
    return lname in UNDERSCORE_ALIASES


def clean_reason(reason: bytes, fallback: bytes) -> bytes:
    """The upstream reason phrase when it is made of allowed characters, else ``fallback``."""
    if reason in VALID_REASONS:
        return reason
    if reason.translate(None, _REASON_CHARS):
        return fallback
    if len(VALID_REASONS) < _CACHE_MAX:
        VALID_REASONS.add(reason)
    return reason


def unchunked(data: bytes) -> list[bytes]:
    """The pieces of a body the gateway chunk-framed itself (``%x CRLF piece CRLF``..., maybe the last chunk):
    the raw bytes an HTTP/2 backend gets when a request framed for HTTP/1.1 goes to one instead."""
    pieces = []
    at = 0
    while at < len(data):
        eol = data.index(b"\r\n", at)
        size = int(data[at:eol], 16)
        if size == 0:
            break
        pieces.append(data[eol + 2:eol + 2 + size])
        at = eol + 4 + size
    return pieces
