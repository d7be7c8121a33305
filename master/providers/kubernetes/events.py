"""Kubernetes Events for the objects the gateway could not serve as written, so ``kubectl describe`` and
``kubectl get events`` say what is wrong with an Ingress, a route or one of our CRD objects, next to its status.

An Event (``events.k8s.io/v1``, type ``Warning``, reason ``ConfigProblem``) is created by the status writer, so by
the Lease holder only, when an object's problems (``Part.errors``: what was left out and why) differ from the ones
last reported for it; the same problems are reported once, and an object whose problems went away is forgotten,
so a recurrence is reported again. A new leader reports the problems present when it takes over once more.
Events are best effort, as client-go's recorder: a failed create is logged and not retried.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.events_v1 import Event

from ....shared import log as gwlog
from .part import Part
from .watch import Reflector

log = gwlog.get("master.kubernetes")

REASON = "ConfigProblem"
NOTE_LIMIT = 1024          # the API server refuses a longer note
CONTROLLER = "a3s.io/gateway"


class EventReporter:
    def __init__(self, client: AsyncClient, reflectors: dict[str, Reflector], identity: str,
                 fallback_namespace: str) -> None:
        """``fallback_namespace`` holds the Events of cluster-scoped objects (the Lease's namespace)."""
        self.client = client
        self.reflectors = reflectors
        self.identity = identity
        self.fallback_namespace = fallback_namespace
        self.reported: dict[str, list[str]] = {}        # source → the problems last reported
        self.stats: dict[str, Any] = {"events": 0, "last_error": None}

    async def report(self, parts: list[Part]) -> None:
        """One Event per object whose problems changed since they were last reported."""
        current = {p.source: p.errors for p in parts if p.errors}
        self.reported = {s: e for s, e in self.reported.items() if s in current}
        for source, errors in current.items():
            if self.reported.get(source) == errors:
                continue
            self.reported[source] = list(errors)
            body = self._event(source, errors)
            if body is None:
                continue
            try:
                await self.client.create(Event.from_dict(body))
                self.stats["events"] += 1
            except ApiError as e:
                self.stats["last_error"] = {"at": time.time(), "error": f"{e.status.code} {e.status.message}"}
                log.warning(f"could not create an Event for {source}: {e.status.code} {e.status.message}")

    def _event(self, source: str, errors: list[str]) -> dict[str, Any] | None:
        kind, _, ref = source.partition(" ")
        ns, _, name = ref.rpartition("/")
        reflector = self.reflectors.get(kind)
        obj = reflector.get(ns, name) if reflector else None
        if reflector is None or obj is None:
            return None
        api = reflector.kind.resource._api_info.resource
        regarding = {"apiVersion": f"{api.group}/{api.version}" if api.group else api.version, "kind": kind,
                     "name": name, **({"namespace": ns} if ns else {}),
                     **({"uid": obj["metadata"]["uid"]} if obj["metadata"].get("uid") else {})}
        note = "; ".join(errors)
        return {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": ns or self.fallback_namespace},
                "eventTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "reportingController": CONTROLLER, "reportingInstance": self.identity[:128],
                "action": "Translate", "reason": REASON, "type": "Warning", "regarding": regarding,
                "note": note if len(note) <= NOTE_LIMIT else note[:NOTE_LIMIT - 1] + "…"}
