"""Worker supervision: spawn one worker per slot, watch it, replace it when it dies or hangs.

Read top to bottom like gunicorn's arbiter: ``spawn`` a worker (fork+exec of ``python -m a3s_gateway.worker``
with its slot's listening sockets and one end of a control channel), ``_watch`` its messages (ready,
heartbeats, generation acks), ``_reap`` it when its pidfd becomes readable, and ``_respawn`` it into the same
slot with exponential backoff when it crashed. ``check_heartbeats`` kills a worker whose event loop has not
beaten for ``heartbeat_timeout`` seconds (it is then reaped and replaced like any other crash).

Workers are exec'd, not merely forked, so they never inherit the host program's event loop, threads or
locks — the embeddable API relies on this.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..shared import log as gwlog
from ..shared.channel import Channel
from ..shared.compiled import spec_lids
from ..shared.errors import GatewayError
from ..shared.plane import Plane
from .sockets import Listeners

log = gwlog.get("arbiter")

BOOT_TIMEOUT = 30.0
HEARTBEAT_TIMEOUT = 10.0
MAX_BACKOFF = 10.0
STABLE_AFTER = 5.0          # a worker that lived this long resets the crash-loop backoff


@dataclass
class WorkerHandle:
    slot: int
    proc: subprocess.Popen
    channel: Channel
    started_at: float
    restarts: int = 0
    generation: int = 0
    ready: asyncio.Future = None  # type: ignore[assignment]
    acks: dict[int, asyncio.Future] = field(default_factory=dict)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    returncode: int | None = None
    fdsock: socket.socket | None = None     # listening sockets for new entrypoints travel here (SCM_RIGHTS)
    lids: set[int] = field(default_factory=set)   # listener sets the worker holds (see sockets.Listeners)

    @property
    def pid(self) -> int:
        return self.proc.pid


class Arbiter:
    def __init__(self, listeners: Listeners, plane: Plane, workers: int, log_level: str, log_format: str,
                 graceful_timeout: float, compiled: Callable[[], dict[str, Any]]) -> None:
        self.listeners = listeners
        self.plane = plane
        self.count = workers
        self.log_level = log_level
        self.log_format = log_format
        self.graceful_timeout = graceful_timeout
        self.compiled = compiled            # the current generation, read at each (re)spawn
        self.handles: dict[int, WorkerHandle] = {}
        self.restarts: dict[int, int] = {}
        self.fast_failures: dict[int, int] = {}
        self.stopping = False
        self._tasks: set[asyncio.Task] = set()
        self.extra_boot: Callable[[], dict[str, Any]] = dict   # control-plane state a new worker needs
        self.on_poke: Callable[[str], None] = lambda service: None   # a served revision's first waiter

    # -- spawning
    async def start(self) -> None:
        """Spawn every slot and wait until each worker accepts; raise if one cannot boot."""
        results = await asyncio.gather(*(self.spawn(slot) for slot in range(self.count)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise GatewayError(f"workers failed to start: {errors[0]}")

    async def spawn(self, slot: int) -> WorkerHandle:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        fd_parent, fd_child = socket.socketpair()
        fds = self.listeners.fds_for(slot)
        specs = self.listeners.worker_specs()
        cmd = [sys.executable, "-m", "a3s_gateway.worker", "--slot", str(slot), "--channel-fd",
               str(child.fileno()), "--log-level", self.log_level, "--log-format", self.log_format]
        proc = subprocess.Popen(cmd, pass_fds=[child.fileno(), fd_child.fileno(), *fds.values()], close_fds=True)
        child.close()
        fd_child_no = fd_child.fileno()
        fd_child.close()
        self.plane.set_worker(slot, proc.pid)
        handle = WorkerHandle(slot, proc, await Channel.open(parent), time.monotonic(),
                              restarts=self.restarts.get(slot, 0), fdsock=fd_parent, lids=set(fds))
        handle.ready = loop.create_future()
        self.handles[slot] = handle
        compiled = self.compiled()
        handle.channel.send({"op": "boot", "compiled": compiled, "plane": self.plane.name,
                             "fds": {str(lid): fd for lid, fd in fds.items()}, "fdsock": fd_child_no,
                             "listeners": specs, "graceful_timeout": self.graceful_timeout, **self.extra_boot()})
        self._track(self._watch(handle))
        pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(pidfd, self._on_exit, handle, pidfd)
        try:
            await asyncio.wait_for(asyncio.shield(handle.ready), BOOT_TIMEOUT)
        except TimeoutError:
            proc.kill()
            raise GatewayError(f"worker {slot} did not become ready within {BOOT_TIMEOUT:.0f}s") from None
        handle.generation = compiled["generation"]
        log.info("worker ready", extra={"fields": {"slot": slot, "pid": proc.pid}})
        return handle

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, handle: WorkerHandle) -> None:
        """Read the worker's messages until its channel closes."""
        while True:
            msg = await handle.channel.recv()
            if msg is None:
                break
            op = msg.get("op")
            if op == "ready" and not handle.ready.done():
                handle.ready.set_result(True)
            elif op == "boot_failed" and not handle.ready.done():
                handle.ready.set_exception(GatewayError(f"worker {handle.slot}: {msg.get('error')}"))
            elif op == "poke":
                self.on_poke(msg["service"])
            elif op in ("loaded", "load_failed"):
                fut = handle.acks.pop(msg["generation"], None)
                if op == "loaded":
                    handle.generation = msg["generation"]
                if "lids" in msg:
                    handle.lids = set(msg["lids"])
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        if not handle.ready.done():
            handle.ready.set_exception(GatewayError(f"worker {handle.slot} exited during boot"))

    # -- reaping and respawning
    def _on_exit(self, handle: WorkerHandle, pidfd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        os.close(pidfd)
        handle.returncode = handle.proc.wait()
        handle.channel.close()
        if handle.fdsock is not None:
            handle.fdsock.close()
        if self.handles.get(handle.slot) is handle:
            # its counters join the retired totals; its in-flight counts stop skewing least-connections
            self.plane.fold_worker(handle.slot)
        handle.exited.set()
        for fut in handle.acks.values():
            if not fut.done():
                fut.set_result({"op": "load_failed", "error": "worker exited"})
        if self.stopping or self.handles.get(handle.slot) is not handle:
            return
        code = handle.returncode
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        hint = " (perhaps out of memory?)" if code == -signal.SIGKILL else ""
        log.error(f"worker exited unexpectedly: {how}{hint}",
                  extra={"fields": {"slot": handle.slot, "pid": handle.pid}})
        self._track(self._respawn(handle))

    async def _respawn(self, dead: WorkerHandle) -> None:
        slot = dead.slot
        lived = time.monotonic() - dead.started_at
        self.fast_failures[slot] = 0 if lived > STABLE_AFTER else self.fast_failures.get(slot, 0) + 1
        delay = min(MAX_BACKOFF, 0.1 * (2 ** self.fast_failures[slot])) if self.fast_failures[slot] > 1 else 0.0
        self.restarts[slot] = self.restarts.get(slot, 0) + 1
        while not self.stopping:
            if delay:
                log.warning("crash loop: delaying respawn", extra={"fields": {"slot": slot, "delay_s": delay}})
                await asyncio.sleep(delay)
            try:
                await self.spawn(slot)
                return
            except GatewayError as e:
                log.error(f"respawn failed: {e}", extra={"fields": {"slot": slot}})
                delay = min(MAX_BACKOFF, max(delay * 2, 0.2))

    def send_all(self, message: dict[str, Any]) -> None:
        """Send a control message (no answer expected) to every live worker."""
        for h in self.handles.values():
            if h.returncode is None:
                try:
                    h.channel.send(message)
                except Exception:  # noqa: BLE001 — a dead channel only means the worker is going away
                    pass

    def check_heartbeats(self) -> None:
        """Kill workers whose event loop stopped beating (the beat is written on the plane by the loop itself)."""
        now = time.monotonic_ns()
        for h in list(self.handles.values()):
            if h.returncode is not None or not h.ready.done():
                continue
            beat = self.plane.last_heartbeat(h.slot)
            if now - beat > HEARTBEAT_TIMEOUT * 1e9:
                log.error("worker missed its heartbeat: killing it", extra={"fields": {"slot": h.slot, "pid": h.pid}})
                h.proc.kill()

    # -- generations
    async def broadcast(self, compiled: dict[str, Any], specs: dict[str, dict] | None = None,
                        timeout: float = 15.0) -> list[str]:
        """Send a generation to every live worker and wait for their answers; return the errors.

        With ``specs`` (the entrypoints' listener specs, see ``sockets.Listeners``) the workers also start
        serving new entrypoints and stop serving removed ones; the listening sockets a worker does not hold
        yet are passed to it over its fd socket (SCM_RIGHTS) just before the message that names them."""
        loop = asyncio.get_running_loop()
        gen = compiled["generation"]
        waits = []
        for h in self.handles.values():
            if h.returncode is None:
                fut = loop.create_future()
                h.acks[gen] = fut
                msg: dict[str, Any] = {"op": "generation", "compiled": compiled}
                if specs is not None:
                    missing = sorted({lid for s in specs.values() for lid in spec_lids(s)} - h.lids)
                    if missing:
                        try:
                            socket.send_fds(h.fdsock, [b"%d" % len(missing)],
                                            [self.listeners.fd(lid, h.slot) for lid in missing])
                        except OSError as e:
                            fut.set_result({"op": "load_failed", "error": f"cannot pass sockets: {e}"})
                            waits.append((h, fut))
                            continue
                    msg["listeners"] = self.listeners.worker_specs(specs)
                    msg["fd_lids"] = missing
                h.channel.send(msg)
                waits.append((h, fut))
        errors = []
        for h, fut in waits:
            try:
                msg = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                errors.append(f"worker {h.slot}: no answer within {timeout:.0f}s")
                continue
            if msg["op"] != "loaded":
                errors.append(f"worker {h.slot}: {msg.get('error')}")
        return errors

    # -- stopping
    async def stop(self, graceful: bool, timeout: float) -> None:
        self.stopping = True
        live = [h for h in self.handles.values() if h.returncode is None]
        for h in live:
            try:
                h.channel.send({"op": "stop", "graceful": graceful, "timeout": timeout})
            except Exception:  # noqa: BLE001 — a dead channel only means the worker is already going
                pass
            if not graceful:
                h.proc.send_signal(signal.SIGKILL)
        log.info("workers asked to stop", extra={"fields": {"workers": len(live), "graceful": graceful}})
        waits = [h.exited.wait() for h in live]
        if waits:
            done, pending = await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout + 5.0)
            for t in pending:
                t.cancel()
        for h in live:
            if h.returncode is None:
                h.proc.kill()
                await h.exited.wait()
        for t in list(self._tasks):
            t.cancel()

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {"slot": h.slot, "pid": h.pid, "alive": h.returncode is None, "restarts": h.restarts,
             "generation": h.generation, "uptime_secs": round(now - h.started_at, 3),
             "heartbeat_age_secs": round(now - self.plane.last_heartbeat(h.slot) / 1e9, 3)
             if h.returncode is None else None}
            for h in sorted(self.handles.values(), key=lambda h: h.slot)
        ]
