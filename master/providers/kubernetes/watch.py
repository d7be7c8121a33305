"""Reflectors: one in-memory store per Kubernetes kind, kept in step with the API server by list + watch.

The cycle for each (kind, namespace) is the informer's: list, then watch from the list's
``metadata.resourceVersion`` with ``allowWatchBookmarks`` (bookmarks only advance the version). When the stream
breaks, the watch is resumed from the last version seen, after a backoff (0.5 s doubling to 30 s, reset by the
first event); a **410 Gone** (the version was compacted away) makes it relist and *diff the list against the
store*, so an object deleted during the gap is removed even though no DELETED event ever arrives (lightkube's own
410 recovery re-watches from "now" with synthetic ADDED events and would keep it).

Invariants:
* a store holds, per (namespace, name), the object as last seen, as a plain dict;
* ``on_change`` is called once per event (or relist) that changed what the gateway reads; no-op updates (same
  object apart from ``resourceVersion``, ``managedFields`` and, for kinds whose status the gateway writes, the
  status) change nothing and are only counted, so the status the gateway writes does not cause a rebuild.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.core.generic_client import BasicRequest

from ....shared import log as gwlog

log = gwlog.get("master.kubernetes")

Key = tuple[str, str]          # (namespace, name); namespace "" for cluster-scoped kinds
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
WATCH_TIMEOUT_SECS = 300       # the server ends a watch after this; it is resumed from the last version


@dataclass(frozen=True)
class Kind:
    """One watched kind: its lightkube resource class, and what counts as a change."""
    name: str                   # "Ingress"
    resource: Any               # the lightkube resource class
    namespaced: bool
    selected: bool = False      # the provider's label selector applies to it
    status_is_ours: bool = False  # the gateway writes its status: a status change is not a config change


def _essence(obj: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """What the gateway reads from an object: no-op updates compare equal."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")}
    out = {k: v for k, v in obj.items() if k != "metadata" and not (kind.status_is_ours and k == "status")}
    out["metadata"] = meta
    return out


class Store(Protocol):
    """What translators read of a kind's objects (a ``Reflector``, or objects read from files)."""

    def objects(self) -> list[dict[str, Any]]: ...

    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class Reflector:
    """The store of one kind, across the namespaces the provider watches."""

    def __init__(self, client: AsyncClient, kind: Kind, namespaces: list[str], labels: str | None,
                 on_change: Callable[[], None]) -> None:
        self.client = client
        self.kind = kind
        self.scopes: list[str | None] = [ns for ns in namespaces] if kind.namespaced and namespaces else [None]
        self.labels = labels if kind.selected else None
        self.on_change = on_change
        self.store: dict[Key, dict[str, Any]] = {}
        self._essences: dict[Key, dict[str, Any]] = {}
        self.synced: set[str | None] = set()        # scopes listed at least once
        self.stats: dict[str, Any] = {"events": 0, "ignored": 0, "bookmarks": 0, "relists": 0, "expired": 0,
                                      "reconnects": 0, "last_event": None, "last_relist": None,
                                      "last_error": None}
        self._tasks: list[asyncio.Task] = []

    @property
    def has_synced(self) -> bool:
        return len(self.synced) == len(self.scopes)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(scope), name=f"k8s-{self.kind.name}-{scope or '*'}")
                       for scope in self.scopes]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind.name, "namespaces": [s or "*" for s in self.scopes], "objects": len(self.store),
                "synced": self.has_synced, **self.stats}

    def objects(self) -> list[dict[str, Any]]:
        """Every stored object, in (namespace, name) order (translations are deterministic)."""
        return [self.store[k] for k in sorted(self.store)]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get((namespace if self.kind.namespaced else "", name))

    # -- the loop
    async def _run(self, scope: str | None) -> None:
        version: str | None = None
        backoff = BACKOFF_MIN
        while True:
            try:
                if version is None:
                    version = await self._relist(scope)
                async for event, obj in self._watch(scope, version):
                    version = obj["metadata"].get("resourceVersion") or version
                    backoff = BACKOFF_MIN
                    if event == "BOOKMARK":
                        self.stats["bookmarks"] += 1
                    else:
                        self._apply(event, obj)
            except asyncio.CancelledError:
                raise
            except WatchError as e:
                if e.code == 410:
                    log.info(f"{self.kind.name} watch expired (410 Gone): relisting")
                    self.stats["expired"] += 1
                    version = None
                    continue
                await self._failed(scope, str(e), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except ApiError as e:
                await self._failed(scope, f"{e.status.code} {e.status.reason}: {e.status.message}", backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception as e:  # noqa: BLE001 — a broken watch is retried, never fatal
                await self._failed(scope, f"{type(e).__name__}: {e}", backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _failed(self, scope: str | None, error: str, backoff: float) -> None:
        self.stats["last_error"] = {"at": time.time(), "error": error}
        self.stats["reconnects"] += 1
        log.warning(f"{self.kind.name} watch in {scope or 'all namespaces'} failed, retrying in {backoff:.1f}s: "
                    f"{error}")
        await asyncio.sleep(backoff)

    async def _relist(self, scope: str | None) -> str:
        listing = self.client.list(self.kind.resource, namespace=self._ns(scope), labels=self._labels())
        seen: dict[Key, dict[str, Any]] = {}
        async for item in listing:
            obj = item.to_dict()
            seen[self._key(obj)] = obj
        changed = False
        for key in [k for k in self.store if (scope is None or k[0] == scope) and k not in seen]:
            changed |= self._remove(key)         # deleted while we were not watching
        for key, obj in seen.items():
            changed |= self._store(key, obj)
        self.synced.add(scope)
        self.stats["relists"] += 1
        self.stats["last_relist"] = time.time()
        if changed or len(self.synced) == len(self.scopes):
            self.on_change()
        return listing.resourceVersion

    async def _watch(self, scope: str | None, version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """One watch request's events, as plain dicts; an ERROR event raises ``WatchError``.

        lightkube's ``watch()`` cannot ask for bookmarks and decodes into typed models; its request builder
        (auth, TLS, URL) and transport are used as they are."""
        generic = self.client._client
        br: BasicRequest = generic.prepare_request(
            "list", res=self.kind.resource, namespace=self._ns(scope), watch=True,
            params={"timeoutSeconds": WATCH_TIMEOUT_SECS, "resourceVersion": version, "allowWatchBookmarks": "true",
                    "labelSelector": self.labels})
        br.timeout = httpx2.Timeout(10.0, read=WATCH_TIMEOUT_SECS + 30)
        resp = await generic.send(generic.build_adapter_request(br), stream=True)
        try:
            if resp.status_code != 200:
                await resp.aread()
                raise WatchError(resp.status_code, resp.text[:200])
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event.get("object") or {}
                    raise WatchError(int(status.get("code") or 500), str(status.get("message")))
                yield event["type"], event["object"]
        finally:
            await resp.aclose()

    def _ns(self, scope: str | None) -> str | None:
        if not self.kind.namespaced:
            return None
        return scope if scope is not None else ALL_NS

    def _labels(self) -> dict[str, Any] | None:
        if not self.labels:
            return None
        out: dict[str, Any] = {}
        for term in self.labels.split(","):
            k, _, v = term.partition("=")
            out[k.strip()] = v.strip() if v else None     # lightkube: None = the label exists
        return out

    # -- the store
    def _key(self, obj: dict[str, Any]) -> Key:
        meta = obj["metadata"]
        return (meta.get("namespace") or "" if self.kind.namespaced else "", meta["name"])

    def _apply(self, event: str, obj: dict[str, Any]) -> None:
        self.stats["events"] += 1
        self.stats["last_event"] = {"at": time.time(), "type": event,
                                    "object": "/".join(filter(None, self._key(obj)))}
        key = self._key(obj)
        changed = self._remove(key) if event == "DELETED" else self._store(key, obj)
        if changed:
            self.on_change()
        else:
            self.stats["ignored"] += 1

    def _store(self, key: Key, obj: dict[str, Any]) -> bool:
        essence = _essence(obj, self.kind)
        self.store[key] = obj
        if self._essences.get(key) == essence:
            return False
        self._essences[key] = essence
        return True

    def _remove(self, key: Key) -> bool:
        self._essences.pop(key, None)
        return self.store.pop(key, None) is not None


class WatchError(Exception):
    """A watch answered with an error status or an ERROR event (410: the version was compacted away)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
