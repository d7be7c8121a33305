"""The control channel between the master and one worker: length-prefixed orjson messages on a Unix socket.

Each worker gets one end of a ``socketpair``; nothing on the request path uses it. Messages are dicts with an
``op`` key. Master → worker: ``generation`` (a compiled config to swap in), ``stop`` (graceful or not).
Worker → master: ``ready``, ``loaded`` / ``load_failed`` (the answer to a generation), ``stopping``.
A frame is a 4-byte big-endian length followed by that many bytes of JSON; a short read means the peer died.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import orjson

_HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024


class Channel:
    """One end of the master/worker channel, used from an asyncio loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME)
        return cls(reader, writer)

    def send(self, message: dict[str, Any]) -> None:
        data = orjson.dumps(message)
        self._writer.write(_HEADER.pack(len(data)) + data)

    async def recv(self) -> dict[str, Any] | None:
        """The next message, or None once the peer has closed its end."""
        try:
            header = await self._reader.readexactly(_HEADER.size)
            (length,) = _HEADER.unpack(header)
            if length > MAX_FRAME:
                return None
            return orjson.loads(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        self._writer.close()
