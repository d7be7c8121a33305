"""What an HTTP/2 request's header fields may be, and how they become an ``Exchange``'s request.

h2's own checks of received fields are turned off (a chain of generators that cost more than the rest of a
request's header handling); ``valid_field`` makes them, with what an HTTP/1.1 backend needs on top, in the one pass
over the fields that ``read_request`` makes anyway. A request that fails any check is malformed (RFC 9113 §8.1.1):
its stream is reset, nothing of it is forwarded.

Identity headers (X-Real-IP, X-Forwarded-Proto/Host/Port) of the client are dropped, X-Forwarded-For is kept to be
extended, split cookies are joined (HTTP/1.1 backends need one field); the rules see the fields as received.
"""

from __future__ import annotations

from .. import framing
from ..exchange import Exchange, Fields
from ..hop_headers import GATEWAY_SET

# Connection-specific fields; they have no place in HTTP/2 (RFC 9113 §8.2.2).
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade"))
# What a received field may be. h2's own checks of received fields are turned off (a chain of generators that
# cost more than the rest of a request's header handling); ``valid_field`` makes them, with what an HTTP/1.1
# backend needs on top: :method a token, :path one request-line token, a valid authority, no framing-header
# spellings with "_" (the framing policy of HTTP/1.1 requests).
_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
_NAME_CHARS = bytes(c for c in range(0x21, 0x7F) if c != 0x3A and not 0x41 <= c <= 0x5A)    # RFC 9113 §8.2.1
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TARGET_CHARS = bytes(c for c in range(0x21, 0x100) if c not in (0x23, 0x7F))   # no SP, control or "#" fragment
# what a value may hold besides obs-text: HTAB and visible ASCII, as llhttp allows on the HTTP/1.1 side (h2 itself
# only forbids NUL, CR and LF, but the request goes on to HTTP/1.1 backends)
_VALUE_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_VALID_FIELDS: set[tuple[bytes, bytes]] = set()
_VALID_MAX = 4096
_VALID_VALUE_MAX = 256
_NOT_KEPT = frozenset((b"authorization", b"proxy-authorization", b"cookie"))


def valid_field(name: bytes, value: bytes) -> bool:
    """Whether one received field is well-formed on its own (RFC 9113 §8.2.1, §8.2.2): a lowercase name without
    separators, a value without control bytes (HTAB aside) or surrounding whitespace, no connection-specific field,
    TE only "trailers", a known pseudo-header, a :path in origin form (or "*"). Short valid fields are kept in
    ``_VALID_FIELDS``, which callers test first (the same few fields repeat on every request); it is emptied when
    full."""
    if value.translate(None, _VALUE_CHARS) or value.strip(b" \t") != value:
        return False
    if name[:1] == b":":
        if name not in _PSEUDO:
            return False
        if name == b":method":
            if not value or value.translate(None, _TOKEN_CHARS):
                return False
        elif name == b":path":      # origin form only (RFC 9113 §8.3.1): routing and the backend see one path
            if (value[:1] != b"/" and value != b"*") or value.translate(None, _TARGET_CHARS):
                return False
        elif name == b":authority" and value not in framing.VALID_HOSTS and not framing.valid_host(value):
            return False
    elif (not name or name.translate(None, _NAME_CHARS) or name in CONNECTION_SPECIFIC
          or framing.underscore_alias(name) or (name == b"te" and value.lower() != b"trailers")
          or (name == b"content-length" and framing.content_length(value) != value)
          or (name == b"host" and value not in framing.VALID_HOSTS and not framing.valid_host(value))):
        return False
    if len(value) <= _VALID_VALUE_MAX and name not in _NOT_KEPT:
        if len(_VALID_FIELDS) >= _VALID_MAX:
            _VALID_FIELDS.clear()
        _VALID_FIELDS.add((name, value))
    return True


def valid_trailers(fields: Fields) -> bool:
    return all(f[0][:1] != b":" and (f in _VALID_FIELDS or valid_field(f[0], f[1])) for f in fields)


def read_request(ex: Exchange, raw: Fields) -> tuple[Fields, bool, int] | None:
    """Fill ``ex``'s request from a HEADERS block: the regular fields as received (what the rules see), whether
    it is a gRPC call and its content-length (-1: none declared), or None for a malformed request. Pseudo-fields
    come first, each at most once (RFC 9113 §8.3): :method always; :scheme and :path unless a plain CONNECT, which
    has neither; :protocol only on CONNECT (RFC 8441); an authority (:authority or Host; the same one when both
    are given)."""
    pseudo: dict[bytes, bytes] = {}
    i = 0
    for field in raw:
        name = field[0]
        if name[:1] != b":":
            break
        if (field not in _VALID_FIELDS and not valid_field(name, field[1])) or name in pseudo:
            return None
        pseudo[name] = field[1]
        i += 1
    regular = raw[i:] if i else raw
    forwarded = _forwarded(ex, regular)
    if forwarded is None:
        return None
    method = pseudo.get(b":method")
    path = pseudo.get(b":path")
    protocol = pseudo.get(b":protocol")
    if method is None or (protocol is not None and method != b"CONNECT"):
        return None
    if method == b"CONNECT" and protocol is None:
        if b":scheme" in pseudo or path is not None:
            return None
    elif b":scheme" not in pseudo or path is None or (path == b"*" and method != b"OPTIONS"):
        return None
    authority = pseudo.get(b":authority")
    host = ex.host or None                  # a Host field (``_forwarded``)
    if authority is None:
        if host is None:
            return None
        authority = host
    elif host is not None and host != authority:
        return None
    if protocol is not None:                # RFC 8441 extended CONNECT: a WebSocket is routed and proxied as the
        ex.upgrade = True                   # GET an HTTP/1.1 client sends (proxy/websocket_h2.py)
        if protocol == b"websocket":
            method = b"GET"
    ex.method = method
    ex.is_head = method == b"HEAD"
    ex.host = authority
    ex.target = path or b"/"
    return regular, *forwarded


def _forwarded(ex: Exchange, regular: Fields) -> tuple[bool, int] | None:
    """``ex.headers`` from the regular fields (and ``ex.host``, ``ex.xff_in``); whether the request is a gRPC
    call and its declared content-length (-1: none), or None when a field is malformed (two content-lengths that
    differ included)."""
    kept: Fields = []
    xff = None
    cookies: list[bytes] = []
    is_grpc = False
    host = None
    length = -1
    for field in regular:
        name, value = field
        if field not in _VALID_FIELDS and not valid_field(name, value):
            return None
        if name[:1] == b":":                # a pseudo-field after a regular one
            return None
        if name in GATEWAY_SET:
            continue
        if name == b"host":
            if host is not None:
                return None
            host = value
        elif name == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
        elif name == b"cookie":             # HTTP/2 may split cookies; HTTP/1.1 needs one field
            cookies.append(value)
        else:
            if name == b"content-type" and value[:16] == b"application/grpc":
                is_grpc = True
            elif name == b"content-length":    # canonical digits (valid_field)
                if length >= 0 and int(value) != length:
                    return None
                length = int(value)
            kept.append(field)
    if cookies:
        kept.append((b"cookie", b"; ".join(cookies)))
    ex.headers = kept
    if host is not None:
        ex.host = host
    if xff is not None:
        ex.xff_in = xff
    return is_grpc, length
