"""The aiohttp connector probes use for unix socket and vsock servers (``shared/transport.py``): every connection
goes to one endpoint whatever the request URL says, as aiohttp's ``UnixConnector`` does for a unix path, but
through ``transport.connect``, which knows vsock too and names the endpoint in its errors."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ...shared import transport


class LocalConnector(aiohttp.BaseConnector):
    def __init__(self, where: transport.Endpoint) -> None:
        super().__init__(force_close=True, limit=0)
        self.where = where

    async def _create_connection(self, req: Any, traces: Any, timeout: aiohttp.ClientTimeout) -> Any:
        """One connection (aiohttp's ``BaseConnector`` hook that ``UnixConnector`` implements too)."""
        try:
            async with asyncio.timeout(timeout.sock_connect or timeout.total):
                sock = await transport.connect(self._loop, self.where)
        except TimeoutError:
            raise
        except OSError as e:
            raise aiohttp.ClientConnectionError(e.strerror or str(e)) from e
        _, proto = await self._loop.create_unix_connection(self._factory, sock=sock)
        return proto
