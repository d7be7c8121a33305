"""The loop every master-side prober shares: reconcile the running probes with a generation, then probe each
service's servers every ``interval``, and stop cleanly.

``ServiceProbes.update`` is the one reconcile loop: a subclass names the ``load_balancer`` table that turns it
on (``KEY``) and implements ``_new_state``, ``_publish``, ``_unprobed`` and ``_probe``. Invariants kept across
reloads:
- a service whose servers and settings are unchanged keeps its task; any other service's task is cancelled
  (``stop`` awaits them all, so no task outlives its prober);
- state is keyed by the backend's plane key (``service|url``), not by the task, so a backend that is still
  probed keeps its counters and its published state, and that state is published again on every update (a
  reload may have reset a flag the prober owns);
- a backend that is no longer probed loses its state and is handed to ``_unprobed`` (the master is the only
  writer of what probes publish, so it must put back the unprobed value itself).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ...shared import transport
from ...shared.config.gateway_schema import load_balancers
from ...shared.plane import Plane
from ...shared.transport import LOCAL_SCHEMES, Endpoint
from ..generations import backend_key
from .local_connector import LocalConnector


class ServiceProbes:
    KEY: str                    # the ``load_balancer`` table whose presence turns probing on for a service
    DECOMPRESS = True           # whether the session decodes Content-Encoding (a health check never reads bodies)
    SESSION = True              # whether probes need the HTTP client session (a sweep of the plane does not)

    def __init__(self, plane: Plane) -> None:
        self.plane = plane
        self.states: dict[str, Any] = {}                        # backend key -> its probe state
        self.tasks: dict[str, tuple[Any, asyncio.Task]] = {}   # service -> (its settings, task)
        self.session: aiohttp.ClientSession | None = None
        self.local_sessions: dict[Endpoint, aiohttp.ClientSession] = {}   # one per unix socket / vsock endpoint

    def _new_state(self, url: str) -> Any:
        raise NotImplementedError

    def _publish(self, idx: int, state: Any) -> None:
        """Write a probed backend's state on the plane."""
        raise NotImplementedError

    def _unprobed(self, idx: int) -> None:
        """Put back what the plane holds for a backend nobody probes."""
        raise NotImplementedError

    async def _probe(self, service: str, cfg: dict[str, Any], url: str, idx: int) -> None:
        raise NotImplementedError

    def _target(self, url: str, path: str) -> tuple[aiohttp.ClientSession, str]:
        """The session and request URL that probe server ``url`` at ``path``. A unix socket or vsock server has
        a session of its own, whose connector goes to its endpoint (the URL's host, ``localhost``, is only the
        Host header); ``h2c://`` servers are probed in HTTP/1.1, as are ``+h2c`` ones."""
        if url.partition("://")[0].lower() not in LOCAL_SCHEMES:
            assert self.session is not None
            return self.session, url.replace("h2c://", "http://", 1) + path
        where = transport.endpoint(url)
        session = self.local_sessions.get(where)
        if session is None:
            session = self.local_sessions[where] = aiohttp.ClientSession(connector=LocalConnector(where),
                                                                         auto_decompress=self.DECOMPRESS)
        return session, "http://localhost" + path

    def _state(self, service: str, url: str) -> Any:
        return self.states.setdefault(backend_key(service, url), self._new_state(url))

    def update(self, compiled: dict[str, Any]) -> None:
        """Make the running probes match a generation (see the module docstring)."""
        services = compiled["config"].get("services", {})
        slots = compiled["slots"]["backends"]
        wanted: dict[str, Any] = {}
        for name, lb in load_balancers(services):
            cfg = lb.get(self.KEY)
            if cfg:
                wanted[name] = (cfg, [(s["url"], slots[backend_key(name, s["url"])]) for s in lb["servers"]])
        for name in list(self.tasks):
            if self.tasks[name][0] != wanted.get(name):
                self.tasks.pop(name)[1].cancel()
        probed = {backend_key(n, url) for n, (_cfg, servers) in wanted.items() for url, _idx in servers}
        for key in list(self.states):
            if key not in probed:
                del self.states[key]
        for name, lb in load_balancers(services):
            for s in lb["servers"]:
                key = backend_key(name, s["url"])
                if key not in probed:
                    self._unprobed(slots[key])
        if self.session is None and wanted and self.SESSION:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0),
                                                 auto_decompress=self.DECOMPRESS)
        loop = asyncio.get_running_loop()
        for name, settings in wanted.items():
            cfg, servers = settings
            for url, idx in servers:
                self._publish(idx, self._state(name, url))
            if name not in self.tasks:
                self.tasks[name] = (settings, loop.create_task(self._run(name, cfg, servers),
                                                               name=f"{self.KEY}:{name}"))

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
        for session in [self.session, *self.local_sessions.values()]:
            if session is not None:
                await session.close()
        self.session = None
        self.local_sessions.clear()
