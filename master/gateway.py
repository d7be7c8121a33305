"""The gateway's lifecycle, shared by the ``a3s-gateway`` binary and the embeddable API.

States::

    created ──start()──► starting ──► running ──reload()──► reloading ──► running
                                         │                                   │
                                         └────────── shutdown() ─────────────┴──► stopping ──► stopped

``start()`` binds every socket, drops privileges, spawns one worker per slot and returns once every worker
accepts. ``reload()`` validates and compiles the new config once, hands it to every worker, and keeps the old
one (raising ``ConfigError``) if anything is wrong; connections are never closed by a reload. ``shutdown()``
stops accepting, lets in-flight requests finish up to the graceful timeout, stops the workers and releases
every socket. A method called in a state that does not allow it raises ``StateError``; ``shutdown()`` twice is
harmless.

The process that calls ``start()`` becomes the master. Workers are fork+exec'd (never bare forks), so they do
not inherit the host program's event loop, threads or locks. Signal handling (SIGTERM/SIGINT graceful stop,
SIGQUIT immediate stop, SIGHUP reload) needs the main thread; ``start()`` refuses to run anywhere else.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

from .. import extensions
from ..shared import log as gwlog
from ..shared.config import GatewayConfig
from ..shared.config.redact import redact_urls
from ..shared.errors import ConfigError, GatewayError, StateError
from ..shared.plane import Plane, PlaneLayout
from . import admin, sd_notify
from .arbiter import Arbiter
from .control import ControlPlane
from .generations import Generations
from .sockets import Listeners, drop_privileges, target_ids

log = gwlog.get("master")

CREATED, STARTING, RUNNING, RELOADING, STOPPING, STOPPED = (
    "created", "starting", "running", "reloading", "stopping", "stopped")


class Gateway:
    """A running gateway: the master side of one node. See the module docstring for the lifecycle."""

    def __init__(self, config: GatewayConfig, *, workers: int | None = None, log_level: str = "info",
                 log_format: str = "json", graceful_timeout: float = 30.0, listen: str | None = None,
                 admin: str | None = None, user: str | None = None, group: str | None = None,
                 handle_signals: bool = True, kubeconfig: str | None = None) -> None:
        self._listen, self._admin_address, self._kubeconfig = listen, admin, kubeconfig
        self._config = self._overridden(config)
        self.workers = workers or os.cpu_count() or 1
        self.log_level = log_level
        self.log_format = log_format
        self.graceful_timeout = graceful_timeout
        self.user, self.group = user, group
        self.handle_signals = handle_signals
        self._state = CREATED
        self._generation = 0
        self._compiled: dict[str, Any] = {}
        self._started_at = 0.0
        self._last_reload: dict[str, Any] = {"ok": None, "at": None, "errors": [], "generation": 0}
        # the file provider: when the config files were last read into a live generation, and why the last
        # re-read was rejected (None once one succeeds again)
        self.file_sync: dict[str, Any] = {"at": None, "errors": None}
        self._reloads = {"total": 0, "failed": 0}
        self._listeners = Listeners()
        self._plane: Plane | None = None
        self._generations: Generations | None = None
        self._arbiter: Arbiter | None = None
        self._admin: admin.AdminServer | None = None
        self._control = ControlPlane(self)     # file watch, providers, health checks, ACME
        self._stopped = asyncio.Event()
        self._shutdown_requested: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._signals: list[int] = []
        self._stop_after_start: bool | None = None    # a stop signal that arrived while starting
        self._reload_after_start = False              # a SIGHUP that arrived while starting

    # -- queries
    def state(self) -> str:
        return self._state

    def is_running(self) -> bool:
        return self._state in (RUNNING, RELOADING)

    def config(self) -> GatewayConfig:
        return self._config

    def health(self) -> dict[str, Any]:
        """A snapshot for ``/api/gateway/health`` and library users (server URLs' passwords masked)."""
        return redact_urls({
            "state": self._state,
            "uptime_secs": round(time.monotonic() - self._started_at, 3) if self._started_at else 0.0,
            "generation": self._generation,
            "config_source": self._config.source,
            "pid": os.getpid(),
            "build": extensions.build(),  # what the workers load: the compiled hot path or pure Python
            "plane": self._plane.name if self._plane is not None else None,
            "workers": self._arbiter.snapshot() if self._arbiter else [],
            "last_reload": dict(self._last_reload),
            "control": self.control(),    # health checks, providers' last sync, ACME status
        })

    def control(self) -> dict[str, Any]:
        """The control plane's state (health checks, providers' syncs, ACME) as kept, URLs unmasked: for callers
        that look servers up by URL and redact what they show (the admin API); ``health()`` masks it."""
        return self._control.snapshot()

    def serving(self) -> dict[str, Any]:
        """The serving controller's state alone (``/api/serving``, the dashboard's Serving page), without the rest
        of the control plane's snapshot."""
        serving = self._control.serving
        return serving.snapshot() if serving is not None else {}

    def compiled(self) -> dict[str, Any]:
        """The live generation: the effective config (providers' routers and services merged in) and its
        plane slot indices (empty before start)."""
        return self._compiled

    def plane(self) -> Plane | None:
        """The node's shared-memory plane (None before start and after stop)."""
        return self._plane

    def metrics(self) -> dict[str, Any]:
        """A snapshot of the gateway's counters (a plain dict; the Prometheus text is at /api/gateway/metrics)."""
        workers = self._arbiter.snapshot() if self._arbiter else []
        return {
            "config_reloads_total": self._reloads["total"],
            "config_reloads_failed_total": self._reloads["failed"],
            "worker_restarts_total": sum(w["restarts"] for w in workers),
            "workers_alive": sum(1 for w in workers if w["alive"]),
            "generation": self._generation,
        }

    # -- lifecycle
    async def start(self) -> None:
        if self._state != CREATED:
            raise StateError(f"start() needs state 'created', the gateway is '{self._state}'")
        if threading.current_thread() is not threading.main_thread() and self.handle_signals:
            raise StateError("start() must run in the main thread (signal handlers need it); "
                             "pass handle_signals=False to embed the gateway elsewhere")
        self._state = STARTING
        self._started_at = time.monotonic()
        self._shutdown_requested = asyncio.Event()
        if self.handle_signals:
            self._install_signals()      # before workers start: a stop or reload signal during start is kept
        try:
            for name in Plane.cleanup_stale():
                log.info(f"removed a stale shared-memory segment of a dead gateway: {name}")
            self._plane = Plane.create(PlaneLayout(max_workers=self.workers))
            self._generations = Generations(self._plane)
            await self._control.prepare(self._config)
            effective = self._control.compile_input(self._config)
            self._compiled = self._generations.compile(effective)
            self._generation = self._compiled["generation"]
            self._listeners.open(effective.entrypoints, self.workers)
            admin_cfg = self._config.data.get("admin", {})
            if admin_cfg.get("enabled", True):
                self._admin = admin.AdminServer(self, admin_cfg["host"], admin_cfg["port"])
                await self._admin.start()
            ids = target_ids(self.user, self.group)
            if ids is not None:
                self._plane.chown(*ids)      # workers run as that user and must attach to the plane
            drop_privileges(self.user, self.group)
            self._arbiter = Arbiter(self._listeners, self._plane, self.workers, self.log_level, self.log_format,
                                    self.graceful_timeout, lambda: self._compiled)
            self._arbiter.extra_boot = self._control.boot_state
            self._arbiter.on_poke = self._control.poke
            await self._arbiter.start()
            self._generations.published(self._generation)
            await self._control.start(self._config, self._compiled)
        except BaseException:
            await self._release(graceful=False)
            self._state = STOPPED
            self._stopped.set()
            raise
        self._tasks.append(asyncio.get_running_loop().create_task(self._supervise()))
        self._state = RUNNING
        self._last_reload.update(ok=True, at=time.time(), generation=1)
        self.file_sync["at"] = self._last_reload["at"]
        sd_notify.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=running, generation 1")
        addresses = self._listeners.urls()
        if self._admin is not None:
            addresses["admin API"] = self._admin.url()
        log.info("gateway running: " + ", ".join(f"{name} on {url}" for name, url in addresses.items()),
                 extra={"fields": {"workers": self.workers, "generation": 1, "listening": addresses}})
        if self._stop_after_start is not None:
            self._spawn(self.shutdown(graceful=self._stop_after_start))
        elif self._reload_after_start:                # the file may have changed after start() read it
            self._spawn(self.request_reload("SIGHUP"))

    async def wait_for_shutdown(self) -> None:
        """Return once the gateway has stopped (after SIGINT/SIGTERM or ``shutdown()``)."""
        if self._state == CREATED:
            raise StateError("wait_for_shutdown() before start()")
        if self._shutdown_requested is not None:
            await self._shutdown_requested.wait()
        await self._stopped.wait()

    async def shutdown(self, graceful_timeout: float | None = None, *, graceful: bool = True) -> None:
        """Stop accepting, let in-flight requests finish (up to the timeout), stop workers. Idempotent."""
        if self._state in (STOPPING, STOPPED):
            await self._stopped.wait()
            return
        if self._state == CREATED:
            self._state = STOPPED
            self._stopped.set()
            return
        self._state = STOPPING
        sd_notify.notify("STOPPING=1")
        if self._shutdown_requested is not None:
            self._shutdown_requested.set()
        timeout = self.graceful_timeout if graceful_timeout is None else graceful_timeout
        log.info("stopping", extra={"fields": {"graceful": graceful, "timeout_s": timeout}})
        await self._release(graceful=graceful, timeout=timeout)
        self._state = STOPPED
        self._stopped.set()
        log.info("stopped")

    async def reload(self, new_config: GatewayConfig | None = None) -> None:
        """Swap in a new config without closing connections; ``None`` re-reads the config file.

        Raises ``ConfigError`` (and keeps serving the old config) when the new one is invalid.
        """
        if self._state not in (RUNNING,):
            raise StateError(f"reload() needs state 'running', the gateway is '{self._state}'")
        self._state = RELOADING
        self._reloads["total"] += 1
        sd_notify.notify("RELOADING=1")
        try:
            cfg = new_config if new_config is not None else GatewayConfig.from_file(self._config.source)
            cfg = self._overridden(cfg)
            effective = self._control.compile_input(cfg)     # + providers' services, ACME certificates
            # New entrypoint addresses are bound now (a bind error rejects the reload, nothing changed);
            # unchanged addresses keep their sockets and queued connections.
            specs, fresh = self._listeners.stage(effective.entrypoints, self.workers)
            try:
                compiled = self._generations.compile(effective)
                errors = await self._arbiter.broadcast(compiled, specs)
                if errors:
                    # Workers that took the new generation go back to the old one, so all serve the same config.
                    await self._arbiter.broadcast(self._compiled, self._listeners.specs)
                    raise GatewayError("reload failed in workers: " + "; ".join(errors))
            except BaseException:
                self._listeners.abort(fresh)
                raise
            self._listeners.commit(specs)     # closes the sockets of removed entrypoints
        except (ConfigError, GatewayError) as e:
            self._reloads["failed"] += 1
            errs = [str(p) for p in e.problems] if isinstance(e, ConfigError) else [str(e)]
            self._last_reload = {"ok": False, "at": time.time(), "errors": errs, "generation": self._generation}
            if new_config is None:
                self.file_sync["errors"] = errs
            for err in errs:
                log.error(f"reload rejected: {err}")
            raise
        finally:
            if self._state == RELOADING:
                self._state = RUNNING
            sd_notify.notify(f"READY=1\nSTATUS=running, generation {self._generation}")
        self._config, self._compiled, self._generation = cfg, compiled, compiled["generation"]
        self._generations.published(self._generation)
        self._last_reload = {"ok": True, "at": time.time(), "errors": [], "generation": self._generation}
        if new_config is None:
            self.file_sync = {"at": self._last_reload["at"], "errors": None}
        self._control.applied(cfg, compiled)
        log.info("config reloaded", extra={"fields": {"generation": self._generation,
                                                      "listening": self._listeners.urls()}})

    # -- internals
    def _overridden(self, cfg: GatewayConfig) -> GatewayConfig:
        """``cfg`` with the ``listen``/``admin``/``kubeconfig`` overrides (the command line's ``--listen``/
        ``--admin``/``--kubeconfig``) applied: they hold for every config the gateway runs, reloaded ones included."""
        if self._listen:
            cfg = cfg.with_listen(self._listen)
        if self._kubeconfig:
            cfg = cfg.with_kubeconfig(self._kubeconfig)
        return cfg.with_admin(self._admin_address) if self._admin_address else cfg

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        handlers = {
            signal.SIGTERM: lambda: self._stop_on_signal(graceful=True),
            signal.SIGINT: lambda: self._stop_on_signal(graceful=True),
            signal.SIGQUIT: lambda: self._stop_on_signal(graceful=False),
            signal.SIGHUP: self._reload_on_signal,
            signal.SIGUSR1: self._reopen_logs,
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
            self._signals.append(sig)

    def _stop_on_signal(self, graceful: bool) -> None:
        """SIGTERM/SIGINT (graceful) or SIGQUIT: stop now, or as soon as a start in progress has finished."""
        if self._state == STARTING:
            self._stop_after_start = graceful if self._stop_after_start is None else self._stop_after_start and graceful
            return
        self._spawn(self.shutdown(graceful=graceful))

    def _reload_on_signal(self) -> None:
        """SIGHUP: reload now, or as soon as a start in progress has finished (a signal has no one to tell
        "try again": workers may already serve while the others start, and the file may change meanwhile)."""
        if self._state == STARTING:
            log.info("SIGHUP reload deferred until the start has finished")
            self._reload_after_start = True
            return
        self._spawn(self.request_reload("SIGHUP"))

    def _reopen_logs(self) -> None:
        """SIGUSR1 (logrotate): every worker reopens its access log file."""
        for h in list(self._arbiter.handles.values()) if self._arbiter else []:
            if h.returncode is None:
                try:
                    os.kill(h.pid, signal.SIGUSR1)
                except ProcessLookupError:
                    pass

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    async def request_reload(self, reason: str) -> GatewayError | None:
        """SIGHUP and ``POST /api/gateway/reload``: reload from the file, serialized with the reloads the file
        watcher and providers ask for (none is dropped). Errors are logged and kept in health(), and returned
        rather than raised (the old config keeps serving)."""
        if self._state not in (RUNNING, RELOADING):
            log.warning(f"{reason} reload ignored in state '{self._state}'")
            return StateError(f"cannot reload in state '{self._state}'")
        return await self._control.reload(reason)

    async def _supervise(self) -> None:
        while self._state not in (STOPPING, STOPPED):
            await asyncio.sleep(1.0)
            if self._arbiter is not None:
                self._arbiter.check_heartbeats()

    async def _release(self, graceful: bool, timeout: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()
        await self._control.stop()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current and t.get_coro().__name__ == "_supervise":
                t.cancel()
        self._listeners.close()        # workers hold their own copies until they stop accepting
        if self._arbiter is not None:
            await self._arbiter.stop(graceful, timeout)
        if self._admin is not None:
            await self._admin.stop()
        if self._plane is not None:
            self._plane.close()
            self._plane.unlink()
