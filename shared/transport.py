"""How a server URL is reached: over TCP (``http://``, ``https://``, ``h2c://``, ``tcp://``, ``udp://``), over a
unix socket (``unix:///path``, ``unix+h2c:///path``) or over vsock (``vsock://CID:PORT``, ``vsock+h2c://CID:PORT``:
the TEE agents in a3s-box VMs).

A unix or vsock server speaks HTTP/1.1 to an HTTP service (``+h2c``: HTTP/2 with prior knowledge, as ``h2c://``)
and plain bytes to a TCP service, as ``http://`` and ``tcp://`` servers do. There is no TLS over them: the peer is
on this host or in its VM.

``endpoint`` reads a validated URL, ``local_url_error`` validates a unix or vsock one (the config schema), and
``connect`` opens a connected non-blocking socket to a unix or vsock endpoint, raising an ``OSError`` whose text
names the address. Its socket is *labelled* AF_UNIX whatever its real family, so that
``loop.create_unix_connection(sock=...)`` takes it: uvloop (the worker's and the master's loop) runs every other
family through its TCP transport, which sets TCP_NODELAY (vsock refuses it: ENOPROTOOPT), and its ``sock_connect``
knows no vsock address. The unix transport only reads, writes and shuts down the descriptor, which any stream
socket allows; asyncio's own loops accept the labelled socket as well.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

LOCAL_SCHEMES = {"unix": "http", "unix+h2c": "h2c", "vsock": "http", "vsock+h2c": "h2c"}
"""Schemes of servers on this host or its VMs, and the protocol each speaks to an HTTP service."""

MAX_UNIX_PATH = 107               # bytes in sockaddr_un.sun_path, less its terminating NUL
VSOCK_ANY = 0xFFFFFFFF            # VMADDR_CID_ANY / VMADDR_PORT_ANY: for binding only, never a peer


class Endpoint(NamedTuple):
    """Where a server's connections go; hashable, so that upstream pools are keyed by it."""

    transport: str                # "tcp", "unix" or "vsock"
    address: Any                  # tcp: (host, port); unix: the socket path; vsock: (cid, port)

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix socket {self.address}"
        if self.transport == "vsock":
            return f"vsock CID {self.address[0]} port {self.address[1]}"
        return f"{self.address[0]}:{self.address[1]}"


def protocol(url: str) -> str:
    """The protocol a server URL speaks: its scheme, ``http`` or ``h2c`` for the unix and vsock schemes."""
    scheme = url.partition("://")[0].lower()
    return LOCAL_SCHEMES.get(scheme, scheme)


def endpoint(url: str) -> Endpoint:
    """The endpoint of a validated server URL (a TCP one without a port gets 80, or 443 for ``https://``)."""
    scheme, _, rest = url.partition("://")
    family = scheme.lower().partition("+")[0]
    if family == "unix":
        return Endpoint("unix", unquote(rest))
    if family == "vsock":
        cid, _, port = rest.partition(":")
        return Endpoint("vsock", (int(cid), int(port)))
    parts = urlsplit(url)
    return Endpoint("tcp", (parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)))


def local_url_error(url: str, shown: str) -> str | None:
    """Why ``url`` (a ``LOCAL_SCHEMES`` URL, ``shown`` as error messages may quote it) is not a usable server."""
    scheme, _, rest = url.partition("://")
    if any(c in rest for c in "?#@"):
        return f"URL '{shown}' must not have a query, a fragment or a user"
    if scheme.lower().startswith("unix"):
        if not rest.startswith("/"):
            return (f"URL '{shown}' needs an absolute socket path and no host: {scheme}:///path/to.sock "
                    f"(three slashes)")
        path = unquote(rest)
        if "\0" in path:
            return f"URL '{shown}' has a NUL byte in its socket path"
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            return f"URL '{shown}': socket path longer than {MAX_UNIX_PATH} bytes, the kernel's limit"
        return None
    cid, colon, port = rest.partition(":")
    if not colon:
        return f"URL '{shown}' needs a CID and a port: {scheme}://CID:PORT"
    for name, value in (("CID", cid), ("port", port)):
        if not value.isdigit() or not value.isascii() or int(value) >= VSOCK_ANY:
            return f"URL '{shown}': the {name} must be an integer from 0 to {VSOCK_ANY - 1}, got {value!r}"
    return None


async def connect(loop: asyncio.AbstractEventLoop, where: Endpoint) -> socket.socket:
    """A connected, non-blocking stream socket to a unix or vsock endpoint, labelled AF_UNIX (module docstring);
    raises OSError naming ``where``. Cancelling it (a connect timeout) closes the socket."""
    sock = socket.socket(socket.AF_UNIX if where.transport == "unix" else socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        err = sock.connect_ex(where.address)
        if err == errno.EINPROGRESS:           # vsock connects asynchronously; unix ones finish or fail at once
            await _writable(loop, sock.fileno())
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            hint = " (no vsock transport reaches this CID)" if err == errno.ENODEV else ""
            raise OSError(err, f"{where}: {os.strerror(err)}{hint}")
    except BaseException:
        sock.close()
        raise
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=sock.detach())


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready = loop.create_future()
    loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_writer(fd)
