"""What an HTTP/1.1 request head may be, and how it becomes an ``Exchange``'s request (``read_request``).

The framing policy (RFC 9112 §6): one Content-Length, forwarded canonical; Transfer-Encoding only exactly one
"chunked", only in HTTP/1.1 and never beside a Content-Length; no framing-header spellings with "_" (a backend may
read them as the real ones). One Host, valid. The client's identity headers (X-Real-IP, X-Forwarded-Proto/Host/Port)
are dropped, its X-Forwarded-For kept to be extended, and what ``Connection`` names is stripped. ``Expect:
100-continue`` is the gateway's to answer, not forwarded. Anything else refuses the request (``Refused``): it is
answered and nothing after it is parsed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from . import framing
from .exchange import Exchange, Fields
from .hop_headers import PLAIN_CONNECTION_OPTIONS, REQUEST_SPECIAL, connection_tokens, length_table, named_by_connection

# headers the request loop looks at: the proxy's own, Expect, and underscore spellings of framing headers
# (framing.py)
_SPECIAL = REQUEST_SPECIAL | framing.UNDERSCORE_ALIASES | {b"expect"}
_SPECIAL_LENGTHS = length_table(_SPECIAL)


class Refused(Exception):
    """The request's head is refused (``ClientProtocol._reject`` answered it); nothing after it is parsed."""


def read_request(ex: Exchange, raw: Fields, url: bytes, max_body_bytes: int) -> None:
    """Fill ``ex``'s forwarded fields (``ex.headers``), framing, Host and target from a parsed head (``ex.http11``
    and ``ex.method`` set); raises ``Refused`` for an ambiguous or invalid one."""
    host = xff = cl = tokens = None
    chunked = has_body = False
    kept = []
    for field in raw:        # one pass; many fields are told ordinary by their name's length, others by a set lookup
        name = field[0]
        size = len(name)
        if size >= len(_SPECIAL_LENGTHS) or not _SPECIAL_LENGTHS[size]:
            kept.append(field)
            continue
        ln = name.lower()
        if ln not in _SPECIAL:
            kept.append(field)
        elif ln == b"host":
            if host is not None:
                raise Refused(400, "Multiple Host headers")
            host = field[1]
        elif ln == b"content-length":     # llhttp refused duplicates and non-digits; forward it canonical
            cl = framing.content_length(field[1])
            if cl is None:
                raise Refused(400, "Invalid Content-Length")
            has_body = cl != b"0"
            kept.append((b"Content-Length", cl))
        elif ln == b"x-forwarded-for":
            xff = field[1] if xff is None else xff + b", " + field[1]
        elif ln == b"transfer-encoding":
            if chunked or not framing.is_chunked(field[1]):
                raise Refused(400, "Unsupported Transfer-Encoding")
            chunked = True
        elif ln == b"connection" and field[1].lower() not in PLAIN_CONNECTION_OPTIONS:
            tokens = connection_tokens(field[1], tokens)
        elif ln == b"expect":
            if field[1].lower() == b"100-continue":     # the gateway answers it (ClientProtocol.expect_continue)
                ex.expect_continue = ex.http11
            else:
                kept.append(field)
        elif ln in framing.UNDERSCORE_ALIASES:
            raise Refused(400, "Invalid header name")
    drop = named_by_connection(tokens) if tokens is not None else None
    if drop is not None:             # rare: Connection names more headers to strip
        drop.discard(b"content-length")     # never: the body would be read as the next request
        kept = [(n, v) for n, v in kept if n.lower() not in drop]
    if chunked:
        if not ex.http11 or cl is not None:     # TE on HTTP/1.0, or TE with CL: the framing is ambiguous
            raise Refused(400, "Invalid Transfer-Encoding")
        has_body = True
    ex.req_chunked = chunked
    ex.req_has_body = has_body
    ex.headers = kept
    limit = max_body_bytes
    if has_body and limit:
        if cl is not None and int(cl) > limit:    # int() of checked digits only
            raise Refused(413, "Request body too large")
        ex.req_limit = limit              # streamed: counted in on_body (middlewares may lower it)
    if xff is not None:
        ex.xff_in = xff
    if host is None:
        if ex.http11:
            raise Refused(400, "Missing Host header")
        host = b""
    elif host not in framing.VALID_HOSTS and not framing.valid_host(host):
        raise Refused(400, "Invalid Host header")
    ex.host = host
    ex.target = url if url[:1] == b"/" else _origin_form(ex, url)


def _origin_form(ex: Exchange, url: bytes) -> bytes:
    """A request target not in origin form: an absolute-form URL's authority replaces Host (RFC 9112 §3.2.2) and
    the rest is the target; ``*`` stays for OPTIONS."""
    if url[:7].lower() in (b"http://", b"https:/"):
        parts = urlsplit(url)
        authority = parts.netloc
        if b"@" in authority or not (authority in framing.VALID_HOSTS or framing.valid_host(authority)):
            raise Refused(400, "Invalid request target")
        ex.host = authority
        return (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
    if url == b"*" and ex.method == b"OPTIONS":
        return url
    raise Refused(400, "Invalid request target")
