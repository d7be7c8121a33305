"""The contract every store and container provider keeps (``redis``, ``etcd``, ``consul``, ``docker``: a module each).

A provider turns what its source holds into a ``kv.Partial`` whose names end in ``@<provider>``, and hands it to
the control plane's ``offer``, which vets it like a file (``merge``): an object that fails validation is reported
with its key path, keeps its last good version when it had one, and the rest of the provider's objects apply.

Lifecycle (``_run``): connect → read everything → offer → watch. A change notification only marks the provider
dirty; once no change has come for ``debounce`` seconds (or ``8 × debounce`` after the first of a steady stream)
it reads everything again and offers the result. So a flood of events costs few rebuilds, and no event is trusted
to say what changed: each read sees the source's final state (keys deleted while disconnected included). A lost
source marks the provider disconnected and it reconnects with exponential backoff (0.1 s doubling up to
``max_backoff``); its last good objects keep serving meanwhile.
"""

from __future__ import annotations

import abc
import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from ...shared import log as gwlog
from ...shared.config import GatewayConfig
from ...shared.errors import ConfigError
from ..background import Background
from .kv import Obj, Partial

log = gwlog.get("master.providers")

FIRST_BACKOFF = 0.1


class Provider(Background):
    """One store provider's connection and its last good objects; subclasses speak to the store."""

    name: ClassVar[str]

    def __init__(self, settings: dict[str, Any], offer: Callable[[Provider, Partial], Awaitable[None]]) -> None:
        self.settings = settings
        self.offer = offer
        self.good: dict[Obj, Any] = {}          # what serves: the objects that passed validation last
        self.problems: list[str] = []           # why objects of the last read were left out or kept old
        self.rejected_updates = 0               # reads with new problems (a metric)
        self.connected = False
        self.last_sync: float | None = None
        self.syncs = 0                          # full reads of the source (one per settled burst of changes)
        self.last_error: str | None = None      # the last connection error (cleared by a successful read)
        self.warning: str | None = None         # a standing condition worth an operator's look
        self._dirty = asyncio.Event()
        self._first_change = 0.0
        self._last_change = 0.0

    # -- what a store implements
    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection (and subscribe, before the first read, so no change falls between)."""

    @abc.abstractmethod
    async def read(self) -> Partial:
        """Everything the source holds, decoded."""

    @abc.abstractmethod
    async def watch(self) -> None:
        """Call ``changed()`` on every change; return or raise when the source is lost."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection: after every session, a failed one too."""

    # -- the shared part
    def changed(self) -> None:
        now = time.monotonic()
        if not self._dirty.is_set():
            self._first_change = now
            self._dirty.set()
        self._last_change = now

    @property
    def task_name(self) -> str:
        return f"provider-{self.name}"

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "connected": self.connected, "last_sync": self.last_sync,
                "last_error": self.last_error, "warning": self.warning, "objects": len(self.good), "syncs": self.syncs,
                "problems": list(self.problems), "rejected_updates": self.rejected_updates}

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        while True:
            watcher: asyncio.Task | None = None
            try:
                await self.connect()
                self.connected = True
                self._dirty.clear()
                await self._sync()
                backoff = FIRST_BACKOFF
                watcher = asyncio.get_running_loop().create_task(self.watch())
                while True:
                    await self._settled(watcher)
                    await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — any loss of the source: keep the last good, reconnect
                self.last_error = f"{type(e).__name__}: {e}"
                if self.connected:
                    log.warning(f"{self.name} provider lost its source (last good config stays): {self.last_error}")
                self.connected = False
            finally:
                if watcher is not None:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
                await asyncio.shield(self._close_quietly())
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings["max_backoff"])

    async def _close_quietly(self) -> None:
        try:
            await self.close()
        except Exception as e:  # noqa: BLE001 — closing a broken connection may fail too
            log.debug(f"{self.name} provider: close failed: {e}")

    async def _settled(self, watcher: asyncio.Task) -> None:
        """Wait for a change and let its burst settle (trailing edge, capped); raise if the watch ended."""
        loop = asyncio.get_running_loop()
        debounce = self.settings["debounce"]
        dirty = loop.create_task(self._dirty.wait())
        done, _ = await asyncio.wait({dirty, watcher}, return_when=asyncio.FIRST_COMPLETED)
        dirty.cancel()
        if watcher in done:
            watcher.result()        # raises what ended the watch
            raise ConnectionError("the watch ended")
        while True:
            now = time.monotonic()
            wait = min(self._last_change + debounce, self._first_change + 8 * debounce) - now
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        self._dirty.clear()

    async def _sync(self) -> None:
        partial = await self.read()
        self.last_error = None
        self.last_sync = time.time()
        self.syncs += 1
        await self.offer(self, partial)

    def accept(self, partial: Partial, accepted: dict[Obj, Any], rejected: dict[Obj, str]) -> bool:
        """Keep what ``offer`` accepted from ``partial``; True when what serves changed."""
        changed = accepted != self.good
        self.good = accepted
        problems = list(partial.unplaced)
        for obj, why in sorted(rejected.items()):
            kept = " (its last good version stays)" if obj in accepted else ""
            problems.append(f"{partial.origins.get(obj, obj[1])}: {why}{kept}")
        if problems and problems != self.problems:      # a new bad update, not the same one read again
            self.rejected_updates += 1
            log.error(f"{self.name} provider: {len(problems)} problem(s): " + "; ".join(problems[:5]))
        self.problems = problems
        return changed


def merge(static: dict[str, Any], contributions: dict[str, dict[Obj, Any]], source: str
          ) -> tuple[dict[str, Any], dict[str, dict[Obj, str]]]:
    """``static`` (a validated config's data, not modified) with every provider's objects added, validated;
    objects that make it invalid are left out (with what depended on them). Returns the data and, per provider,
    why each object was left out. The files win: an object whose name they define is left out.

    Raises ``ConfigError`` only when a problem is not any provider object's (the static config is invalid)."""
    data = copy.deepcopy(static)
    owner: dict[Obj, str] = {}
    rejected: dict[str, dict[Obj, str]] = {p: {} for p in contributions}
    for provider, objects in contributions.items():
        for (section, name), obj in objects.items():
            if name in data[section]:
                rejected[provider][(section, name)] = f"the files define {section[:-1]} '{name}' (files win)"
                continue
            data[section][name] = copy.deepcopy(obj)
            owner[(section, name)] = provider
    for _ in range(len(owner) + 1):         # every failed round removes at least one object
        try:
            return GatewayConfig.from_dict(data, source=source).data, rejected
        except ConfigError as e:
            blamed: dict[Obj, list[str]] = {}
            for problem in e.problems:
                obj = _blame(problem.path, owner)
                if obj is None:
                    raise
                blamed.setdefault(obj, []).append(f"{problem.path}: {problem.message}"
                                                  + (f" (did you mean '{problem.suggestion}'?)"
                                                     if problem.suggestion else ""))
            for obj, messages in blamed.items():
                del data[obj[0]][obj[1]]
                rejected[owner.pop(obj)][obj] = "; ".join(messages)
    raise AssertionError("unreachable: each round removes an object")


def _blame(path: str, owner: dict[Obj, str]) -> Obj | None:
    """The provider object a problem's dotted path lies in (the longest name that prefixes it)."""
    best: Obj | None = None
    for section, name in owner:
        prefix = f"{section}.{name}"
        if (path == prefix or path.startswith((prefix + ".", prefix + "["))) and (
                best is None or len(name) > len(best[1])):
            best = (section, name)
    return best
