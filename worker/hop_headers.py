"""Hop-by-hop and identity header facts shared by the HTTP/1.1 server and upstream sides (the `headers`
middleware is ``middlewares/headers.py``)."""

from __future__ import annotations

from typing import Any

# RFC 9110 §7.6.1 hop-by-hop fields, plus the non-standard ones proxies must not forward.
HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization",
))

# Identity headers the gateway sets itself; a client's copies are dropped so they cannot be spoofed.
# (X-Forwarded-For is the exception: the client's value is kept and the peer address appended, as nginx's
# $proxy_add_x_forwarded_for does.)
GATEWAY_SET = frozenset((b"x-real-ip", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"))


# Connection options that name no header: nothing else to strip when these are the only ones.
PLAIN_CONNECTION_OPTIONS = frozenset((b"keep-alive", b"close", b"upgrade"))

# Request and response header names the proxy loops must look at; any other header is forwarded as it is,
# so the common case costs one set lookup per header.
REQUEST_SPECIAL = HOP_BY_HOP | GATEWAY_SET | {b"host", b"x-forwarded-for", b"content-length"}
RESPONSE_SPECIAL = HOP_BY_HOP | {b"content-length"}


def length_table(names: frozenset[bytes]) -> bytes:
    """``table[n]`` is 1 when a name in ``names`` is ``n`` bytes long (0 past the end): a field whose name has
    another length is none of them, known without a lower-cased copy of the name."""
    lengths = {len(n) for n in names}
    return bytes(1 if n in lengths else 0 for n in range(max(lengths) + 1))


def named_by_connection(tokens: set[bytes]) -> set[bytes] | None:
    """The extra headers a Connection header's options name (RFC 9110 §7.6.1), or None when they name none.
    Callers skip it when Connection had no options beyond the plain ones (the common case)."""
    extra = tokens - PLAIN_CONNECTION_OPTIONS
    return extra or None


def connection_tokens(value: bytes, into: set[bytes] | None = None) -> set[bytes]:
    """The lowercase option tokens of a Connection header value (added to ``into`` when given)."""
    tokens = into if into is not None else set()
    for t in value.split(b","):
        t = t.strip().lower()
        if t:
            tokens.add(t)
    return tokens


def forwarded_const(transport: Any, scheme: bytes, port: int, client: Any = None) -> tuple[str, bytes, bytes]:
    """A new client connection's address (str and bytes) and its identity fields (X-Real-IP, X-Forwarded-Proto,
    X-Forwarded-Port) serialized once for every request it carries. ``client``: the address a trusted PROXY
    protocol header named (``proxy_protocol.py``), instead of the peer's."""
    peer = client or transport.get_extra_info("peername")
    client_ip = peer[0] if peer else ""
    ip = client_ip.encode()
    return client_ip, ip, b"X-Real-IP: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Port: %d\r\n" % (ip, scheme, port)
