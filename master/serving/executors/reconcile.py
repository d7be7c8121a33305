"""The loop the docker, http and kubernetes executors share: ``scale`` records the wish, one task makes it so.

``scale(n)`` only stores ``n`` and wakes the executor's task, so it never waits on the daemon, the scale URL or
the API server (the autoscaler's tick is never held up by a slow or dead one). The task runs ``setup`` once
(connect, adopt what a previous run left), then ``reconcile(desired)`` whenever woken. A failure is recorded
(``last_error``, ``errors``, a log line) and retried after a backoff that doubles from ``BACKOFF_MIN`` to
``max_backoff``; it resets only when ``stable()`` says the instances stay up, so an instance that dies as soon as
it starts backs off like one that cannot be created.

``close`` stops the task, then the instances (``stop_instances``), then connections (``release``); ``detach``
(what ``adopt`` does to the executor it replaces) only the task and connections.

Invariants: one task per executor, started by the first ``scale`` (or ``adopt``); ``instances()`` is the last
view ``set_instances`` published, and ``on_change`` fires exactly when that view changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ....shared import log as gwlog
from ..executor import Instance, ScaleExecutor
from .settings import Reader, SettingsError

log = gwlog.get("master.serving")

BACKOFF_MIN = 0.5


class Reconciler(ScaleExecutor):
    """A ``ScaleExecutor`` whose work is done by its own task; subclasses write ``setup`` and ``reconcile``,
    and name the dataclass their table reads into (``settings_type``, with a ``max_backoff`` field)."""

    settings_type: ClassVar[Any]        # a class with ``read(Reader) -> instance``

    def __init__(self, service: str, revision: str, settings: Mapping[str, Any],
                 on_change: Callable[[], None]) -> None:
        super().__init__(service, revision, settings, on_change)
        self.config, errors = self.read(settings)
        if errors:
            raise SettingsError(errors)
        self.max_backoff: float = self.config.max_backoff
        self.desired: int | None = None
        self._instances: dict[str, Instance] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._delay = BACKOFF_MIN
        self._retry_at = 0.0
        self._handover: asyncio.Task[None] | None = None

    @classmethod
    def read(cls, settings: Mapping[str, Any]) -> tuple[Any, list[str]]:
        reader = Reader(settings)
        config = cls.settings_type.read(reader)
        return config, reader.done()

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[str]:
        return cls.read(settings)[1]

    # -- the contract
    async def scale(self, desired: int) -> None:
        self.desired = desired
        self._start()
        self._wake.set()

    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    async def close(self) -> None:
        await self._stop_task()
        try:
            await self.stop_instances()
        finally:
            await self.release()
        self.set_instances({})

    async def detach(self) -> None:
        """Stop working without stopping any instance (a newer executor of the revision took over)."""
        await self._stop_task()
        await self.release()

    def adopt(self, previous: ScaleExecutor) -> None:
        """Take over from ``previous`` after a reload that kept the revision: it detaches, its instances stay
        and this executor's ``setup`` finds them (containers by label, registrations by revision, pods by
        EndpointSlice)."""
        if isinstance(previous, Reconciler) and previous is not self:
            self.desired = previous.desired if self.desired is None else self.desired
            self._instances = dict(previous._instances)
            self._handover = asyncio.get_running_loop().create_task(previous.detach())
            self._start()
            self._wake.set()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "desired": self.desired,
                "retry_in_s": round(max(0.0, self._retry_at - time.monotonic()), 3) or None}

    # -- for subclasses
    async def setup(self) -> None:
        """Once, before the first ``reconcile`` (retried with the backoff until it succeeds)."""

    async def reconcile(self, desired: int) -> None:
        """Move toward ``desired``; raise to have the failure recorded and retried."""
        raise NotImplementedError

    async def stop_instances(self) -> None:
        """``close``'s work once the task is stopped: stop every instance of the revision."""

    async def release(self) -> None:
        """Close connections and watches (idempotent); instances are left as they are."""

    def stable(self) -> bool:
        """Whether a successful ``reconcile`` may reset the backoff (no instance has just died)."""
        return True

    def set_instances(self, instances: dict[str, Instance]) -> None:
        if instances != self._instances:
            self._instances = instances
            self.on_change()

    def failed(self, why: str) -> None:
        """Record a failure and push the next attempt back (also for failures seen outside ``reconcile``)."""
        self.last_error = why
        self.errors += 1
        self._retry_at = time.monotonic() + self._delay
        log.warning(f"serving {self.service}/{self.revision} ({self.kind}): {why}; retrying in {self._delay:.1f}s")
        self._delay = min(self._delay * 2, self.max_backoff)

    def wake(self) -> None:
        """Reconcile again soon (an instance went away on its own)."""
        self._wake.set()

    # -- the task
    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"serving-{self.kind}-"
                                                                               f"{self.service}-{self.revision}")

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        ready = False
        while True:
            await self._wake.wait()
            if (wait := self._retry_at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            try:
                if not ready:
                    await self.setup()
                    ready = True
                if self.desired is not None:
                    await self.reconcile(self.desired)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — every failure is recorded and retried, never fatal
                self.failed(str(e) if isinstance(e, ExecutorError) else f"{type(e).__name__}: {e}")
                self._wake.set()
                continue
            if self.stable():
                self._delay = BACKOFF_MIN
                self.last_error = None


class ExecutorError(Exception):
    """A failure whose message is already the whole story (shown as is in ``last_error``)."""
