"""``process``: a revision's instances as local processes, one per port of the configured range.

Each instance is ``/bin/sh -c <command>`` with ``{port}`` filled in (and ``PORT`` in its environment, as Knative
gives containers), in a session of its own so that stopping it reaches everything the shell started.

Invariants:

* every process started is reaped: a watcher task per instance awaits its exit, and ``close`` (the gateway's
  stop) sends SIGTERM to every process group, then SIGKILL to those still alive after ``STOP_GRACE``, and waits
  for each; nothing outlives the gateway.
* a process that exits without being asked to is an error (``last_error`` says which port, the exit status and
  how long it ran) and the next start waits a backoff that doubles per failure in a row, from ``BACKOFF`` up to
  ``MAX_BACKOFF``; a process that lived ``HEALTHY_RUN`` seconds resets it.
* ``adopt`` takes over the previous executor's processes (a reload that kept the revision); the previous one is
  then empty, so closing it stops nothing.
* a port is used by one instance at a time (``scale`` calls are serialized, so two starts never pick the same
  one); ports that something else holds are skipped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ....shared import log as gwlog
from ..executor import Instance, ScaleExecutor

log = gwlog.get("master.serving")

STOP_GRACE = 5.0          # seconds between SIGTERM and SIGKILL
BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_RUN = 10.0


@dataclass(eq=False)
class _Proc:
    port: int
    proc: asyncio.subprocess.Process
    started: float
    owner: ProcessExecutor
    stopping: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    watcher: asyncio.Task | None = field(default=None, repr=False)


class ProcessExecutor(ScaleExecutor):
    kind = "process"

    def __init__(self, service: str, revision: str, settings: Mapping[str, Any], on_change: Any) -> None:
        super().__init__(service, revision, settings, on_change)
        self.low, self.high = settings["ports"]
        self._procs: dict[int, _Proc] = {}          # by port
        self._failures = 0                           # exits in a row that nobody asked for
        self._not_before = 0.0                       # monotonic time of the next allowed start
        self._scaling = asyncio.Lock()               # one scale at a time: a port is chosen, then awaited on

    # -- ScaleExecutor
    async def scale(self, desired: int) -> None:
        async with self._scaling:
            await self._scale(desired)

    async def _scale(self, desired: int) -> None:
        live = [p for p in self._procs.values() if not p.stopping]
        if len(live) > desired:
            # stop the youngest first: the oldest have warm caches and are surely ready
            for p in sorted(live, key=lambda p: p.started, reverse=True)[: len(live) - desired]:
                self._stop(p)
            self.on_change()
            return
        if len(live) == desired or time.monotonic() < self._not_before:
            return
        started = False
        for _ in range(desired - len(live)):
            port = self._free_port()
            if port is None:
                self._failed(f"no free port in {self.low}-{self.high} for another instance")
                break
            try:
                await self._start(port)
                started = True
            except OSError as e:
                self._failed(f"cannot start {self.settings['command']!r}: {e.strerror or e}")
                break
        if started:
            self.on_change()

    def instances(self) -> list[Instance]:
        return [Instance(str(p.proc.pid), f"127.0.0.1:{p.port}", "terminating" if p.stopping else "starting")
                for p in self._procs.values()]

    async def close(self) -> None:
        procs = list(self._procs.values())
        for p in procs:
            if not p.stopping:
                self._stop(p)
        await asyncio.gather(*(p.watcher for p in procs if p.watcher is not None), return_exceptions=True)

    def adopt(self, previous: ScaleExecutor) -> None:
        if not isinstance(previous, ProcessExecutor):
            return
        for port, p in previous._procs.items():
            p.owner = self
            self._procs[port] = p
        previous._procs = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ports": f"{self.low}-{self.high}",
                "backoff_s": round(max(0.0, self._not_before - time.monotonic()), 3)}

    # -- instances
    def _free_port(self) -> int | None:
        for port in range(self.low, self.high + 1):
            if port in self._procs:
                continue
            with socket.socket() as s:
                # as a server binds: connections of a previous instance in TIME_WAIT do not hold the port
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        return None

    async def _start(self, port: int) -> None:
        command = self.settings["command"].replace("{port}", str(port))
        env = {**os.environ, **self.settings["env"], "PORT": str(port)}
        proc = await asyncio.create_subprocess_shell(command, env=env, cwd=self.settings["cwd"],
                                                     stdin=asyncio.subprocess.DEVNULL, stdout=2,
                                                     start_new_session=True)
        p = _Proc(port, proc, time.monotonic(), self)
        p.watcher = asyncio.get_running_loop().create_task(_watch(p))
        self._procs[port] = p
        log.info(f"serving {self.service}/{self.revision}: started instance pid {proc.pid} on port {port}")

    def _stop(self, p: _Proc) -> None:
        p.stopping = True
        p.stop.set()
        _signal(p, signal.SIGTERM)

    def _exited(self, p: _Proc) -> None:
        self._procs.pop(p.port, None)
        ran = time.monotonic() - p.started
        if not p.stopping:
            code = p.proc.returncode
            self._failed(f"instance on port {p.port} exited with status {code} after {ran:.1f}s",
                         reset=ran >= HEALTHY_RUN)
        self.on_change()

    def _failed(self, message: str, reset: bool = False) -> None:
        self.last_error = message
        self.errors += 1
        self._failures = 1 if reset else self._failures + 1
        delay = min(MAX_BACKOFF, BACKOFF * 2 ** (self._failures - 1))
        self._not_before = time.monotonic() + delay
        log.error(f"serving {self.service}/{self.revision}: {message}; next start in {delay:.1f}s")


def _signal(p: _Proc, sig: int) -> None:
    try:
        os.killpg(p.proc.pid, sig)
    except ProcessLookupError:
        pass


async def _watch(p: _Proc) -> None:
    """Reap the instance; once it is asked to stop, SIGKILL it if SIGTERM did not end it within STOP_GRACE."""
    wait = asyncio.ensure_future(p.proc.wait())
    stop = asyncio.ensure_future(p.stop.wait())
    try:
        await asyncio.wait({wait, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not wait.done():
            try:
                await asyncio.wait_for(asyncio.shield(wait), STOP_GRACE)
            except TimeoutError:
                _signal(p, signal.SIGKILL)
                await wait
    except asyncio.CancelledError:   # the gateway's loop is going away: leave nothing behind
        _signal(p, signal.SIGKILL)
        raise
    finally:
        stop.cancel()
    _signal(p, signal.SIGKILL)       # whatever the shell left in its group
    p.owner._exited(p)
