"""HTTP/3 on TLS entrypoints with ``http3 = true``: QUIC (aioquic) on the entrypoint's port over UDP, beside its
TCP side, announced to TCP clients by an ``Alt-Svc`` field.

``server.py`` (imported only when an entrypoint enables HTTP/3, so the gateway runs without aioquic otherwise)
holds one protocol object per QUIC connection, ``H3Server``; its requests are ``http2.Stream``s — the same
``Downstream`` of the same ``Exchange`` as HTTP/2 requests, so routing, the chain, backend picking and the response
phase are shared, not copied.

Which worker serves a QUIC connection: the master binds one ``SO_REUSEPORT`` UDP socket per worker slot (as for
UDP entrypoints), and the kernel picks the socket for each datagram by hashing its 4-tuple, so every datagram of
one client address reaches the same worker, which holds that connection's state. A client that changes address
mid-connection (QUIC connection migration, a NAT rebinding) lands on another worker that does not know its
connection IDs: its packets are dropped and the client starts over (or falls back to TCP). Routing by connection
ID would need a BPF program on the socket group; it is left out on purpose.
"""

from __future__ import annotations

import asyncio
from typing import Any

ALT_SVC_MAX_AGE = 86400


def alt_svc(ep: dict[str, Any]) -> bytes | None:
    """The ``Alt-Svc`` value the TCP side of entrypoint ``ep`` sends, or None without HTTP/3."""
    return b'h3=":%d"; ma=%d' % (ep["port"], ALT_SVC_MAX_AGE) if ep.get("http3") else None


class WithHttp3:
    """An entrypoint's TCP server and its HTTP/3 side, served and stopped together."""

    def __init__(self, tcp: asyncio.AbstractServer, h3: Any) -> None:
        self.tcp = tcp
        self.h3 = h3

    def close(self) -> None:
        self.tcp.close()
        self.h3.close()
