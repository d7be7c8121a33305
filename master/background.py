"""A control-plane job that lives as one asyncio task in the master: a provider, the DNS resolver, discovery, ACME.

``start`` creates the task from ``_run`` (which loops until cancelled and handles its own errors); ``stop``
cancels it and waits until it has finished, so nothing of it runs after ``stop`` returns. Subclasses that own
more (a client session) extend ``stop`` and call ``super().stop()`` first.
"""

from __future__ import annotations

import abc
import asyncio


class Background(abc.ABC):
    """One long-running task of the master, started and stopped with the control plane."""

    task: asyncio.Task | None = None

    @property
    def task_name(self) -> str:
        """The task's name, as ``asyncio.all_tasks()`` and a stack dump show it."""
        return type(self).__name__.lower()

    @abc.abstractmethod
    async def _run(self) -> None:
        """The job itself: runs until cancelled."""

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
