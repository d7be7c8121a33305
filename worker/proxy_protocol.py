"""The PROXY protocol (HAProxy's, v1 text and v2 binary): a header in front of a connection's bytes that names
the client a load balancer in front of the gateway accepted, and the same header sent to backends.

Receiving (``[entrypoints.<name>.proxy_protocol] trusted_ips``): such an entrypoint accepts its connections
itself (``ProxyProtocolListener``), so that a header can be read off the socket before anything else, TLS
handshake included. From a trusted peer, a header (v1 or v2, optional) is read and consumed, and its source
address becomes the client address of the connection (``client``: X-Forwarded-For, X-Real-IP, ``ClientIP()``,
ip-allow, rate-limit keys, access log); a malformed or incomplete header (within the header timeout) closes the
connection. From anyone else nothing is read: a header is then just bytes that are not HTTP (a 400 and a closed
connection) or not TLS (a failed handshake). Entrypoints without ``proxy_protocol`` are served as ever, so the
feature costs nothing when off, and nothing per request when on.

Sending (``[services.<name>.load_balancer.proxy_protocol] version``): ``header`` builds what a backend
connection starts with; such connections carry one client's bytes only (never pooled across clients).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any

from ..shared import log as gwlog
from ..shared.ipmatch import IPSet
from .peek import peek_until

log = gwlog.get("worker.proxy_protocol")

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107                                   # the longest v1 line, CRLF included (spec §2.1)
PEEK_BYTES = 536                               # v2 header with room for TLVs (spec: receivers read 536 at most)

Address = tuple[str, int]


class HeaderError(ValueError):
    """A header that is not a valid PROXY protocol header."""


def parse(data: bytes) -> tuple[int, Address | None] | None:
    """``data`` starting with a complete header: (its length, the client address, None for LOCAL/UNKNOWN). None
    when more bytes are needed. Raises ``HeaderError`` when ``data`` does not start with a valid header (an
    empty result for bytes that are no header at all: ``(0, None)``)."""
    n = min(len(data), len(V1_PREFIX))
    if data[:n] == V1_PREFIX[:n]:
        return None if n < len(V1_PREFIX) else _parse_v1(data)
    n = min(len(data), len(V2_SIGNATURE))
    if data[:n] == V2_SIGNATURE[:n]:
        return None if n < len(V2_SIGNATURE) else _parse_v2(data)
    return 0, None


def _parse_v1(data: bytes) -> tuple[int, Address | None] | None:
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= V1_MAX:
            raise HeaderError("v1 header without CRLF")
        return None
    parts = data[:end].split(b" ")
    if parts[1:2] == [b"UNKNOWN"]:
        return end + 2, None
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise HeaderError("v1 header is not 'PROXY TCP4|TCP6 src dst sport dport'")
    try:
        src = ipaddress.ip_address(parts[2].decode())
        ipaddress.ip_address(parts[3].decode())
        sport, dport = int(parts[4]), int(parts[5])
    except ValueError as e:
        raise HeaderError(f"v1 header: {e}") from None
    if src.version != (4 if parts[1] == b"TCP4" else 6) or not (0 <= sport < 65536 and 0 <= dport < 65536):
        raise HeaderError("v1 header: address family or port out of range")
    return end + 2, _client(src, sport)


def _parse_v2(data: bytes) -> tuple[int, Address | None] | None:
    if len(data) < 16:
        return None
    ver_cmd, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF > 1:
        raise HeaderError("v2 header: unknown version or command")
    if len(data) < 16 + length:
        return None
    size = 16 + length
    if ver_cmd & 0xF == 0:                     # LOCAL: the proxy's own connection (health checks)
        return size, None
    body = data[16:size]
    if family >> 4 == 1 and length >= 12:      # AF_INET
        return size, _client(ipaddress.IPv4Address(body[:4]), struct.unpack("!H", body[8:10])[0])
    if family >> 4 == 2 and length >= 36:      # AF_INET6
        return size, _client(ipaddress.IPv6Address(body[:16]), struct.unpack("!H", body[32:34])[0])
    if family >> 4 in (0, 3):                  # UNSPEC, AF_UNIX: no address to take
        return size, None
    raise HeaderError("v2 header: address block too short for its family")


def _client(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> Address:
    """An IPv4-mapped IPv6 address is its IPv4 one, as rules and ``ip-allow`` ranges name it."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip), port


def header(version: int, src: Any, dst: Any) -> bytes:
    """The header a backend connection starts with, for a client ``src`` that reached the gateway at ``dst``
    (peer and socket names; anything but two IP addresses of one family is sent as UNKNOWN / LOCAL)."""
    try:
        s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
        sport, dport = int(src[1]), int(dst[1])
    except (TypeError, ValueError, IndexError):
        return b"PROXY UNKNOWN\r\n" if version == 1 else V2_SIGNATURE + b"\x20\x00\x00\x00"
    if s.version != d.version:
        s = s if s.version == 6 else ipaddress.IPv6Address(f"::ffff:{s}")
        d = d if d.version == 6 else ipaddress.IPv6Address(f"::ffff:{d}")
    if version == 1:
        return b"PROXY TCP%d %s %s %d %d\r\n" % (s.version, str(s).encode(), str(d).encode(), sport, dport)
    family = b"\x11" if s.version == 4 else b"\x21"
    addresses = s.packed + d.packed + struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + b"\x21" + family + struct.pack("!H", len(addresses)) + addresses


def send(transport: asyncio.BaseTransport, version: int, client: Any) -> None:
    """Start a new backend connection with a header (``version`` 0: none) for the client side ``client`` (a
    ``Downstream``: its ``peername`` is the client, its ``sockname`` the gateway address it reached)."""
    if version:
        transport.write(header(version, client.peername, client.sockname))  # type: ignore[attr-defined]


async def read(loop: asyncio.AbstractEventLoop, conn: socket.socket, timeout: float) -> Address | None:
    """The client address a trusted peer's header names (None: no header, or LOCAL/UNKNOWN), the header consumed
    from ``conn`` and nothing after it. Raises ``HeaderError``, ``TimeoutError`` or ``ConnectionError``."""
    size, client = await peek_until(loop, conn, PEEK_BYTES, timeout, parse, None, "closed before a PROXY header")
    if size:
        conn.recv(size)                        # the header only: what follows is the client's
    return client


class ProxyProtocolListener:
    """Accepts on one HTTP entrypoint socket with ``proxy_protocol``: a trusted peer's header is read first, then
    the socket goes to the event loop (with TLS when the entrypoint has it) with ``factory(client)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str, sock: socket.socket, trusted: IPSet,
                 factory: Callable[[Address | None], asyncio.Protocol], ssl: Any, timeout: Callable[[], float]):
        self.loop = loop
        self.name = name
        self.sock = sock
        self.trusted = trusted
        self.factory = factory
        self.ssl = ssl
        self.timeout = timeout                 # the current [limits] header_timeout
        self.task = loop.create_task(self._accept_loop())

    def close(self) -> None:
        self.task.cancel()
        self.sock.close()

    async def _accept_loop(self) -> None:
        while True:
            try:
                conn, addr = await self.loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                log.warning(f"entrypoint {self.name}: accept failed: {e}")
                await asyncio.sleep(0.05)
                continue
            self.take(conn, addr)

    def take(self, conn: socket.socket, addr: Any) -> None:
        conn.setblocking(False)
        self.loop.create_task(self._serve(conn, addr[0] in self.trusted if addr else False))

    async def _serve(self, conn: socket.socket, trusted: bool) -> None:
        client = None
        try:
            if trusted:
                client = await read(self.loop, conn, self.timeout())
            await self.loop.connect_accepted_socket(lambda: self.factory(client), conn, ssl=self.ssl)
        except (HeaderError, TimeoutError, OSError, ConnectionError) as e:
            log.debug(f"entrypoint {self.name}: connection dropped: {e}")
            conn.close()
