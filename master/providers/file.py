"""The file provider: reload when the config file or its conf.d directory changes.

Runs in the master (never in workers), on ``watchfiles`` (inotify). It watches the *folders* that hold the
main file and the ``providers.file.directory``, not the files themselves, because editors save by writing a
temporary file and renaming it over the original — the watch on a replaced inode would go silent, a folder
watch sees the rename. Only events for the main file or for ``*.toml``/``*.yaml``/``*.yml`` in the conf.d
directory count.

Debounce is trailing-edge: a reload happens ``debounce`` seconds after the *last* relevant change, so an
editor's second write (or a burst of files copied into conf.d) is always part of the reload that follows,
and the final state of the files is what gets applied. Paths are made absolute when the watcher starts, so a
relative ``--config`` keeps working if the process changes directory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import watchfiles

from ...shared import log as gwlog
from ...shared.config.load import CONFIG_EXTENSIONS

log = gwlog.get("master.watch")

DEBOUNCE = 0.3


class FileWatcher:
    def __init__(self, config_path: str, directory: str | None, on_change: Callable[[str], Awaitable[None]],
                 debounce: float = DEBOUNCE) -> None:
        self.config_path = os.path.abspath(config_path)
        self.directory = os.path.abspath(directory) if directory else None
        self.on_change = on_change
        self.debounce = debounce
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.config_path, self.directory)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._dirty = asyncio.Event()
        self._last_change = 0.0
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._debounced())]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)   # errors were logged by the tasks
        self._tasks = []

    def _relevant(self, path: str) -> bool:
        path = os.path.abspath(path)
        if path == self.config_path:
            return True
        if not self.directory:
            return False
        if path == self.directory:      # conf.d itself appearing or vanishing
            return True
        return os.path.dirname(path) == self.directory and path.lower().endswith(CONFIG_EXTENSIONS)

    def _roots(self) -> list[str]:
        roots = {os.path.dirname(self.config_path)}
        if self.directory:
            # a missing conf.d is watched through its parent until it appears
            roots.add(self.directory if os.path.isdir(self.directory) else os.path.dirname(self.directory))
        return sorted(r for r in roots if os.path.isdir(r))

    async def _watch(self) -> None:
        """Producer: note the time of every relevant change (one long-lived watch, so no event is missed)."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            roots = self._roots()
            try:
                async for changes in watchfiles.awatch(*roots, watch_filter=None, stop_event=self._stop,
                                                       debounce=20, step=10, recursive=False,
                                                       rust_timeout=500):
                    if any(self._relevant(path) for _change, path in changes):
                        self._last_change = loop.time()
                        self._dirty.set()
                    if self._roots() != roots:       # conf.d appeared or vanished: watch the new set
                        break
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — a watcher failure must not take the master down
                log.error(f"file watcher failed, retrying: {e}")
                await asyncio.sleep(1.0)

    async def _debounced(self) -> None:
        """Consumer: reload once no relevant change has arrived for ``debounce`` seconds (trailing edge)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            while (quiet := loop.time() - self._last_change) < self.debounce:
                await asyncio.sleep(self.debounce - quiet)
            self._dirty.clear()
            log.info("config files changed: reloading", extra={"fields": {"config": self.config_path}})
            try:
                await self.on_change("file change")
            except Exception as e:  # noqa: BLE001 — logged; the next change tries again
                log.error(f"reload after a file change failed: {e}")
