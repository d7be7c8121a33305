"""What the master's per-service probers share: one task per service that probes every server of the service
concurrently each ``interval``, and a clean stop.

``HealthChecker`` (active health checks) and ``ModelProbe`` (agent model state) subclass ``ServiceProbes``;
each decides in ``update()`` which services it probes and implements ``_probe()`` for one server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp


class ServiceProbes:
    def __init__(self) -> None:
        self.tasks: dict[str, tuple[Any, asyncio.Task]] = {}   # service -> (its settings, task)
        self.session: aiohttp.ClientSession | None = None

    async def _probe(self, service: str, cfg: dict[str, Any], url: str, idx: int) -> None:
        raise NotImplementedError

    async def _run(self, service: str, cfg: dict[str, Any], servers: list[tuple[str, int]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.gather(*(self._probe(service, cfg, url, idx) for url, idx in servers))
            await asyncio.sleep(max(0.0, cfg["interval"] - (loop.time() - started)))

    async def stop(self) -> None:
        tasks = [t for _s, t in self.tasks.values()]
        self.tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None
