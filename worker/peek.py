"""Reading an accepted connection's first bytes without consuming them, until a parser can decide.

A socket that is not yet the event loop's (a TCP router peeking at the ClientHello's SNI, an entrypoint reading a
trusted peer's PROXY header) is waited on with ``add_reader`` and read with ``MSG_PEEK``, so the bytes stay in the
kernel for whoever reads next. A partial prefix keeps the socket readable: the wait then sleeps ``RETRY`` seconds
instead of spinning.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

RETRY = 0.005


async def peek_until(loop: asyncio.AbstractEventLoop, conn: socket.socket, max_bytes: int, timeout: float,
                     parse: Callable[[bytes], T], need_more: object, closed: str) -> T:
    """``parse`` of the first ``max_bytes`` bytes once it returns anything but ``need_more``. Raises
    ``TimeoutError`` after ``timeout`` seconds and ``ConnectionError(closed)`` if the peer closes first."""
    deadline = loop.time() + timeout
    fd = conn.fileno()
    readable = asyncio.Event()
    while True:
        readable.clear()
        loop.add_reader(fd, readable.set)
        try:
            await asyncio.wait_for(readable.wait(), max(0.0, deadline - loop.time()))
        finally:
            loop.remove_reader(fd)
        data = conn.recv(max_bytes, socket.MSG_PEEK)
        if not data:
            raise ConnectionError(closed)
        result = parse(data)
        if result is not need_more:
            return result
        await asyncio.sleep(RETRY)
        if loop.time() > deadline:
            raise TimeoutError
