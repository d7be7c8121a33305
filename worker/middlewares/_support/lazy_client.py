"""A network client a middleware opens on first use (an aiohttp session, a Redis pool) and closes for sure.

A middleware drops its client when a reload replaces the middleware and when the worker stops. Closing is async
while ``Middleware.close`` is not, so the close runs as a task; ``CLOSING`` holds those tasks until they finish,
and the worker's exit awaits them (``wait_closed``): a close left unfinished when the loop ends is what aiohttp
reports at error level as "Unclosed client session".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

C = TypeVar("C")

CLOSING: set[asyncio.Task] = set()


class LazyClient(Generic[C]):
    """``get()`` opens the client with ``opener`` when there is none; ``close()`` hands it to ``closer``."""

    __slots__ = ("_client", "_closer", "_opener")

    def __init__(self, opener: Callable[[], C], closer: Callable[[C], Awaitable[object]]) -> None:
        self._opener, self._closer = opener, closer
        self._client: C | None = None

    def get(self) -> C:
        if self._client is None:
            self._client = self._opener()
        return self._client

    def close(self) -> None:
        """Close in the background; opened again lazily should a request of an old generation still use it."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:     # no loop: nothing was ever opened on one
            return
        task = loop.create_task(self._closer(client))    # type: ignore[arg-type]
        CLOSING.add(task)
        task.add_done_callback(CLOSING.discard)


async def wait_closed(timeout: float) -> None:
    """Wait (up to ``timeout`` seconds) for every close started by ``LazyClient.close``."""
    if CLOSING:
        await asyncio.wait(set(CLOSING), timeout=timeout)
