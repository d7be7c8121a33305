"""Removing an entrypoint without resetting its clients (a reload that drops or moves it).

Two kinds of connection are at risk. Those the kernel has accepted but no worker has taken yet sit in the
listening socket's accept queue, and closing the last copy of that socket (the master's, once every worker has
answered the generation) resets them: ``accept_queued`` takes them first. And a connection whose request bytes
are in the kernel but not yet read looks idle to its protocol, and closing a socket with unread data sends a
reset: ``unread_bytes`` tells them apart.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios


def accept_queued(sock: socket.socket) -> list[tuple[socket.socket, tuple]]:
    """Every connection waiting in a listening socket's accept queue, with its peer address, taken now."""
    sock.setblocking(False)     # the flag is the open file's: already so for the worker's server on it
    taken = []
    while True:
        try:
            conn, addr = sock.accept()
        except OSError:           # BlockingIOError: the queue is empty
            return taken
        conn.setblocking(False)
        taken.append((conn, addr))


def unread_bytes(transport: asyncio.BaseTransport | None) -> int:
    """Bytes the kernel holds for a connection that its protocol has not read yet (FIONREAD); 0 for what is not a
    socket transport (a TCP relay's pair of transports)."""
    get_extra_info = getattr(transport, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    if sock is None or sock.fileno() < 0:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0
