"""The contract between the autoscaler and whatever runs a revision's instances.

The autoscaler (once per node, in the master) decides how many instances a revision should have; a
``ScaleExecutor`` makes it so and reports what exists. One executor object serves one revision, built from that
revision's settings (``[services.<name>.serving.revisions.<rev>]``: ``executor = "process" | "docker" | "http" |
"kubernetes"`` and a table of the same name). Implementations, a module each: ``process``, ``docker``, ``http``,
``kubernetes``.

Invariants every implementation keeps:

- ``scale(n)`` is idempotent and never blocks for an instance's start-up: it starts or stops instances to move
  toward ``n`` and returns; readiness is the activator's business (it probes ``ready_path`` itself).
- ``instances()`` is cheap (no I/O): the executor's current view, kept up to date by its own tasks.
- A failure (a command that exits at once, an image that does not exist, a scale URL that refuses) never raises
  out of ``scale``: it is recorded in ``last_error`` (with ``errors`` counting them) and retried with a bounded
  backoff on the next ``scale`` call.
- ``close()`` stops every instance this executor started (the gateway's SIGTERM), and ``detach()`` forgets the
  executor without stopping anything (a reload that keeps the revision hands its instances to the new one through
  ``adopt``).
- ``on_change`` is called (from the master's event loop) whenever ``instances()`` changed, so the master can
  publish the new backend set without polling.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

State = Literal["starting", "ready", "terminating"]


@dataclass(frozen=True, slots=True)
class Instance:
    """One running (or starting, or stopping) instance of a revision, as its executor sees it."""

    id: str                 # unique within the executor: a pid, a container id, a pod name, a registration id
    address: str            # "host:port" the gateway proxies to
    state: State            # the executor's view; "ready" from the executor does not skip the activator's probe


class ScaleExecutor(abc.ABC):
    """Runs one revision's instances; see the module docstring for the invariants."""

    kind: ClassVar[str]
    # True when every gateway node sees the same instances (a Deployment, a registry) rather than running its own:
    # with several nodes (``[serving] redis_url``) only the leader then calls ``scale`` (master/serving/coordinator.py)
    shared: ClassVar[bool] = False

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[str]:
        """Why ``settings`` (the revision's ``[...revisions.<rev>.<kind>]`` table, as written) cannot work: one
        message per problem, each starting with the key it is about (``"image: must not be empty"``); empty when
        they are fine. Called in the master on every config load and reload, before anything starts, so a bad
        table is rejected with its path and the running gateway keeps its last good config."""
        return []

    def __init__(self, service: str, revision: str, settings: Mapping[str, Any],
                 on_change: Callable[[], None]) -> None:
        self.service = service
        self.revision = revision
        self.settings = settings
        self.on_change = on_change
        self.last_error: str | None = None
        self.errors = 0

    @abc.abstractmethod
    async def scale(self, desired: int) -> None:
        """Move toward ``desired`` instances; record failures in ``last_error`` rather than raise."""

    @abc.abstractmethod
    def instances(self) -> list[Instance]:
        """The instances that exist now (no I/O)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every instance this executor started and release its resources."""

    def adopt(self, previous: ScaleExecutor) -> None:  # noqa: B027 — an optional hook, not abstract
        """Take over ``previous``'s instances after a reload that kept the revision (default: nothing to take)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What ``/api/serving`` shows about the executor (never a secret)."""
        return {"kind": self.kind, "last_error": self.last_error, "errors": self.errors}
