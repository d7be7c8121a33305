"""The discovery provider: backends that describe themselves at ``/.well-known/a3s-service.json``.

Every ``poll_interval_secs`` the master fetches the document from each seed URL (``timeout_secs``), checks
it, and probes the seed's ``health_path``. A seed that answers both contributes:

* a service named by the document's ``name`` whose server is the seed URL (with the document's ``weight``;
  seeds that publish the same ``name`` are replicas: their servers are merged into one service);
* one router per entry of ``routes``: ``<name>`` for the first, ``<name>-<i>`` after it, with the route's
  ``rule``, ``middlewares`` and ``priority``.

Static config always wins: a discovered service or router whose name the files already use is skipped,
with a warning (logged once per document version). The merged result goes through the same validation as
the files (``ControlPlane.compile_input``); a document that would make the config invalid is rejected (the
previous version of that seed stays) and logged. A seed that fails ``failure_threshold`` polls in a row (no
document, invalid document, or failing health) loses its services. Any change of the contributed set —
added, removed, or a new ``version`` — asks the control plane to publish a new generation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ...shared import log as gwlog
from ..background import Background

log = gwlog.get("master.discovery")

WELL_KNOWN = "/.well-known/a3s-service.json"


class DocumentError(ValueError):
    pass


def check_document(doc: Any) -> dict[str, Any]:
    """The normalized document, or ``DocumentError`` saying what is wrong with it."""
    if not isinstance(doc, dict):
        raise DocumentError("document is not a JSON object")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not name or any(c in name for c in " /|"):
        raise DocumentError("'name' must be a non-empty string without spaces, '/' or '|'")
    if not isinstance(version, (str, int, float)) or isinstance(version, bool) or version == "":
        raise DocumentError("'version' is required (a string)")
    routes = doc.get("routes", [])
    if not isinstance(routes, list):
        raise DocumentError("'routes' must be a list")
    out_routes = []
    for i, r in enumerate(routes):
        if not isinstance(r, dict) or not isinstance(r.get("rule"), str) or not r["rule"]:
            raise DocumentError(f"routes[{i}].rule must be a non-empty string")
        mws = r.get("middlewares", [])
        if not isinstance(mws, list) or not all(isinstance(m, str) for m in mws):
            raise DocumentError(f"routes[{i}].middlewares must be a list of names")
        prio = r.get("priority")
        if prio is not None and (not isinstance(prio, int) or isinstance(prio, bool)):
            raise DocumentError(f"routes[{i}].priority must be an integer")
        out_routes.append({"rule": r["rule"], "middlewares": mws, "priority": prio})
    health_path = doc.get("health_path", "/health")
    if not isinstance(health_path, str) or not health_path.startswith("/"):
        raise DocumentError("'health_path' must be a path starting with '/'")
    weight = doc.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
        raise DocumentError("'weight' must be a non-negative integer")
    return {"name": name, "version": str(version), "routes": out_routes, "health_path": health_path,
            "weight": weight}


@dataclass
class Seed:
    url: str
    doc: dict[str, Any] | None = None          # the accepted document (None: contributes nothing)
    failures: int = 0
    last_error: str | None = None
    last_ok: float | None = None
    warned: set[str] = field(default_factory=set)


def contribution(seeds: list[Seed], static_routers: set[str], static_services: set[str],
                 warn: bool = False) -> dict[str, dict[str, Any]]:
    """The routers and services the accepted documents add (static names win)."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for seed in sorted(seeds, key=lambda s: s.url):
        doc = seed.doc
        if doc is None:
            continue
        name = doc["name"]
        if name in static_services:
            if warn and f"service:{name}" not in seed.warned:
                seed.warned.add(f"service:{name}")
                log.warning(f"discovered service '{name}' from {seed.url} ignored: the static config defines it")
            continue
        svc = services.setdefault(name, {"load_balancer": {"servers": []}})
        svc["load_balancer"]["servers"].append({"url": seed.url.rstrip("/"), "weight": doc["weight"]})
        for i, route in enumerate(doc["routes"]):
            rname = name if i == 0 else f"{name}-{i}"
            if rname in static_routers:
                if warn and f"router:{rname}" not in seed.warned:
                    seed.warned.add(f"router:{rname}")
                    log.warning(f"discovered router '{rname}' from {seed.url} ignored: the static config "
                                "defines it")
                continue
            if rname in routers:
                continue        # a replica publishing the same routes
            router = {"rule": route["rule"], "service": name, "middlewares": route["middlewares"]}
            if route["priority"] is not None:
                router["priority"] = route["priority"]
            routers[rname] = router
    return {"routers": routers, "services": services}


class Discovery(Background):
    def __init__(self, settings: dict[str, Any], on_change: Callable[[str], Awaitable[None]],
                 accepts: Callable[[list[Seed]], str | None]) -> None:
        """``accepts(seeds)`` returns why the config with these seeds' documents would be invalid, or None."""
        self.settings = settings
        self.on_change = on_change
        self.accepts = accepts
        self.seeds = [Seed(s["url"]) for s in settings["seeds"]]
        self.session: aiohttp.ClientSession | None = None
        self.last_sync: float | None = None

    def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        super().start()

    async def stop(self) -> None:
        await super().stop()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def snapshot(self) -> dict[str, Any]:
        return {"last_sync": self.last_sync,
                "seeds": [{"url": s.url, "name": s.doc and s.doc["name"], "version": s.doc and s.doc["version"],
                           "failures": s.failures, "last_error": s.last_error, "last_ok": s.last_ok}
                          for s in self.seeds]}

    async def _run(self) -> None:
        while True:
            try:
                changed = await self.poll()
            except Exception as e:  # noqa: BLE001 — never let one bad poll stop discovery
                log.error(f"discovery poll failed: {e}")
                changed = False
            if changed:
                await self.on_change("discovery")
            await asyncio.sleep(self.settings["poll_interval_secs"])

    async def poll(self) -> bool:
        """Poll every seed once; True when the contributed config changed."""
        results = await asyncio.gather(*(self._fetch(seed) for seed in self.seeds))
        changed = False
        for seed, (doc, error) in zip(self.seeds, results):
            if error is not None:
                seed.failures += 1
                seed.last_error = error
                if seed.doc is not None and seed.failures >= self.settings["failure_threshold"]:
                    log.warning(f"discovery seed {seed.url} removed after {seed.failures} failed polls: {error}")
                    seed.doc = None
                    changed = True
                continue
            seed.failures, seed.last_error, seed.last_ok = 0, None, time.time()
            if seed.doc is not None and doc == seed.doc:
                continue
            previous = seed.doc
            seed.doc = doc
            why = self.accepts(self.seeds)
            if why is not None:
                seed.doc = previous
                seed.last_error = f"document rejected: {why}"
                log.error(f"discovery seed {seed.url}: document version {doc['version']} rejected: {why}")
                continue
            log.info("discovered service", extra={"fields": {"seed": seed.url, "name": doc["name"],
                                                               "version": doc["version"]}})
            changed = True
        self.last_sync = time.time()
        return changed

    async def _fetch(self, seed: Seed) -> tuple[dict[str, Any] | None, str | None]:
        assert self.session is not None
        timeout = aiohttp.ClientTimeout(total=self.settings["timeout_secs"])
        base = seed.url.rstrip("/")
        try:
            async with self.session.get(base + WELL_KNOWN, timeout=timeout) as resp:
                if resp.status != 200:
                    return None, f"{WELL_KNOWN} answered {resp.status}"
                doc = check_document(await resp.json(content_type=None))
            async with self.session.get(base + doc["health_path"], timeout=timeout) as resp:
                if not 200 <= resp.status < 300:
                    return None, f"health {doc['health_path']} answered {resp.status}"
        except DocumentError as e:
            return None, f"invalid document: {e}"
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            return None, f"{type(e).__name__}: {e}"
        return doc, None
