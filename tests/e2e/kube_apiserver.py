"""A fake Kubernetes API server (aiohttp) that lightkube talks to as to a real cluster.

Served: discovery (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``), and for every kind
in ``KINDS`` list, watch (NDJSON events above the requested ``resourceVersion``, ``BOOKMARK`` events when asked,
ending after ``timeoutSeconds``), get, create, replace (409 on a stale ``resourceVersion``), merge patch and
delete, namespaced and across namespaces, with equality label selectors; ``/status`` subresources record every
write in ``status_writes``. Leases are plain objects, so optimistic concurrency is what elects a leader.
Deployments have the ``/scale`` subresource (an ``autoscaling/v1`` ``Scale``: GET, PUT, merge PATCH of
``spec.replicas``), every write recorded in ``scale_writes``; no controller runs, so pods and their EndpointSlices
appear only when a test applies them.

Test hooks (thread-safe; the server runs on its own loop in a thread): ``apply``/``delete`` change the state,
``pause()``/``resume()`` hold event delivery (to make a gap), ``compact()`` ends every open watch with a 410
``Expired`` ERROR event and makes watches from an older version get the same, as etcd compaction does;
``refuse_watches(plural, n)`` answers the next n watches of a kind with 500.

Invariants: one global resourceVersion counter, increased by every write; an event carries the object as it
was after that write; a watch never sees an event at or below the version it asked for.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# plural → (group, version, kind, namespaced)
KINDS: dict[str, tuple[str, str, str, bool]] = {
    "services": ("", "v1", "Service", True),
    "secrets": ("", "v1", "Secret", True),
    "namespaces": ("", "v1", "Namespace", False),
    "ingresses": ("networking.k8s.io", "v1", "Ingress", True),
    "ingressclasses": ("networking.k8s.io", "v1", "IngressClass", False),
    "endpointslices": ("discovery.k8s.io", "v1", "EndpointSlice", True),
    "deployments": ("apps", "v1", "Deployment", True),
    "leases": ("coordination.k8s.io", "v1", "Lease", True),
    "events": ("events.k8s.io", "v1", "Event", True),
    "gatewayclasses": ("gateway.networking.k8s.io", "v1", "GatewayClass", False),
    "gateways": ("gateway.networking.k8s.io", "v1", "Gateway", True),
    "httproutes": ("gateway.networking.k8s.io", "v1", "HTTPRoute", True),
    "grpcroutes": ("gateway.networking.k8s.io", "v1", "GRPCRoute", True),
    "referencegrants": ("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", True),
    "routes": ("a3s.io", "v1alpha1", "Route", True),
    "middlewares": ("a3s.io", "v1alpha1", "Middleware", True),
}
PLURAL_OF_KIND = {kind: plural for plural, (_g, _v, kind, _n) in KINDS.items()}


def api_version(plural: str) -> str:
    group, version, _kind, _ns = KINDS[plural]
    return f"{group}/{version}" if group else version


def _selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.strip() not in labels:
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


@dataclass
class _Watch:
    plural: str
    namespace: str | None
    selector: str | None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class FakeApiServer:
    def __init__(self, bookmark_interval: float = 0.3) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}   # (plural, ns, name) → object
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []    # (rv, plural, type, object)
        self.rv = 100
        self.compacted = 0
        self.bookmark_interval = bookmark_interval
        self.status_writes: list[dict[str, Any]] = []
        self.scale_writes: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []                       # (method, path?query)
        self.bookmarks_sent = 0
        self._watches: list[_Watch] = []
        self._paused: list[tuple[str, str, dict[str, Any]]] | None = None
        self._refusals: dict[str, int] = {}                             # plural → watches to answer 500
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle (a thread with its own loop)
    def start(self) -> FakeApiServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-apiserver")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake apiserver did not start")
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, namespace: str = "default") -> str:
        """A kubeconfig (YAML is a superset of JSON) pointing at this server with a bearer token."""
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        })

    def _call(self, fn: Any, *args: Any) -> Any:
        assert self._loop is not None
        done: asyncio.Future = asyncio.run_coroutine_threadsafe(self._run_sync(fn, *args), self._loop)
        return done.result(10)

    async def _run_sync(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    # -- test hooks
    def apply(self, *objs: dict[str, Any]) -> None:
        """Create or replace each object (kind and metadata.namespace pick where it goes), all in one go."""
        self._call(lambda: [self._put(PLURAL_OF_KIND[o["kind"]], copy.deepcopy(o)) for o in objs])

    def delete(self, kind: str, name: str, namespace: str = "") -> None:
        self._call(self._delete, PLURAL_OF_KIND[kind], namespace, name)

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        obj = self._call(lambda: self.objects.get((PLURAL_OF_KIND[kind], namespace, name)))
        return copy.deepcopy(obj)

    def pause(self) -> None:
        """Hold events: watchers see nothing until ``resume()`` (or ``compact()``, which drops them)."""
        self._call(lambda: setattr(self, "_paused", []))

    def resume(self) -> None:
        def go() -> None:
            held, self._paused = self._paused or [], None
            for plural, kind, obj in held:
                self._notify(plural, kind, obj)
        self._call(go)

    def compact(self) -> None:
        """Forget history: open watches end with 410, and so does any later watch from an older version."""
        def go() -> None:
            self.compacted = self.rv
            self.events.clear()
            self._paused = None
            for w in self._watches:
                w.queue.put_nowait(("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                              "code": 410, "reason": "Expired",
                                              "message": "too old resource version"}))
        self._call(go)

    def refuse_watches(self, plural: str, count: int) -> None:
        """The next ``count`` watch requests of ``plural`` answer 500, as an overloaded API server does."""
        self._call(lambda: self._refusals.__setitem__(plural, count))

    def watch_requests(self, plural: str) -> list[str]:
        return [q for m, q in list(self.requests) if m == "GET" and f"/{plural}?" in q and "watch=" in q]

    # -- state changes (on the server loop)
    def _put(self, plural: str, obj: dict[str, Any], only_status: bool = False) -> dict[str, Any]:
        group, version, kind, namespaced = KINDS[plural]
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace", "") if namespaced else ""
        if namespaced:
            meta["namespace"] = ns or "default"
            ns = meta["namespace"]
        key = (plural, ns, meta["name"])
        old = self.objects.get(key)
        if only_status:
            assert old is not None
            obj = {**copy.deepcopy(old), "status": obj.get("status")}
            meta = obj["metadata"]
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"] if old
                        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        meta["generation"] = (old["metadata"].get("generation", 1) + (old.get("spec") != obj.get("spec"))
                              if old else 1)
        obj["apiVersion"], obj["kind"] = api_version(plural), kind
        self.objects[key] = obj
        self._record(plural, "MODIFIED" if old else "ADDED", obj)
        return obj

    def _delete(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        if KINDS[plural][3] and not ns:
            ns = "default"
        obj = self.objects.pop((plural, ns, name), None)
        if obj is not None:
            self.rv += 1
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
            self._record(plural, "DELETED", obj)
        return obj

    def _record(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(obj)
        self.events.append((self.rv, plural, kind, snapshot))
        if self._paused is not None:
            self._paused.append((plural, kind, snapshot))
        else:
            self._notify(plural, kind, snapshot)

    def _notify(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        for w in self._watches:
            if self._wants(w, plural, obj):
                w.queue.put_nowait((kind, obj))

    @staticmethod
    def _wants(w: _Watch, plural: str, obj: dict[str, Any]) -> bool:
        return (w.plural == plural and w.namespace in (None, obj["metadata"].get("namespace"))
                and _selector_matches(w.selector, obj["metadata"].get("labels") or {}))

    # -- HTTP
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        parts = [p for p in request.path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis", "version"):
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if parts[0] == "version":
            return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"})
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if parts == ["apis"]:
            groups = sorted({(g, v) for g, v, _k, _n in KINDS.values() if g})
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups]})
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        gv = "v1" if parts[0] == "api" else "/".join(parts[1:3])
        if not rest:
            return web.json_response({"kind": "APIResourceList", "groupVersion": gv, "resources": [
                r for plural, (g, v, kind, namespaced) in KINDS.items() if api_version(plural) == gv
                for r in ({"name": plural, "kind": kind, "namespaced": namespaced,
                           "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                          {"name": f"{plural}/status", "kind": kind, "namespaced": namespaced,
                           "verbs": ["get", "update", "patch"]},
                          *([{"name": f"{plural}/scale", "kind": "Scale", "group": "autoscaling", "version": "v1",
                              "namespaced": True, "verbs": ["get", "update", "patch"]}]
                            if plural == "deployments" else []))]})
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        if plural not in KINDS or api_version(plural) != gv:
            return self._status(404, "NotFound", f"the server could not find the requested resource {plural}")
        if name is None:
            if request.method == "GET":
                if request.query.get("watch", "").lower() in ("true", "1"):
                    return await self._watch(request, plural, ns)
                return self._list(request, plural, ns)
            if request.method == "POST":
                obj = await request.json()
                key = (plural, ns or "", obj["metadata"]["name"])
                if key in self.objects:
                    return self._status(409, "AlreadyExists", f"{plural} {obj['metadata']['name']} already exists")
                obj["metadata"]["namespace"] = ns
                return web.json_response(self._put(plural, obj), status=201)
            return self._status(405, "MethodNotAllowed", request.method)
        key = (plural, ns or "", name)
        old = self.objects.get(key)
        if sub == "scale" and plural == "deployments":
            return await self._scale(request, old, plural, name)
        if request.method == "GET":
            return web.json_response(old) if old else self._status(404, "NotFound", f"{plural} {name} not found")
        if request.method == "DELETE":
            gone = self._delete(plural, ns or "", name)
            return web.json_response(gone) if gone else self._status(404, "NotFound", f"{plural} {name} not found")
        if old is None:
            return self._status(404, "NotFound", f"{plural} {name} not found")
        body = await request.json()
        if request.method == "PUT":
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != old["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", f"the object has been modified; {plural} {name}")
            new = body
        elif request.method == "PATCH":
            new = _merge_patch(old, body)
        else:
            return self._status(405, "MethodNotAllowed", request.method)
        new.setdefault("metadata", {}).update(name=name, namespace=ns)
        if sub == "status":
            self.status_writes.append({"kind": KINDS[plural][2], "namespace": ns or "", "name": name,
                                       "method": request.method, "content_type": request.content_type,
                                       "status": copy.deepcopy(new.get("status")), "at": time.time()})
            return web.json_response(self._put(plural, new, only_status=True))
        new.pop("status", None)
        if "status" in old:
            new["status"] = old["status"]
        return web.json_response(self._put(plural, new))

    async def _scale(self, request: web.Request, deployment: dict[str, Any] | None, plural: str,
                     name: str) -> web.Response:
        """A Deployment's ``/scale``: the Scale object the real API server derives from it, and writes of
        ``spec.replicas`` through it (merge patch or a whole Scale; a stale resourceVersion is 409)."""
        if deployment is None:
            return self._status(404, "NotFound", f'deployments.apps "{name}" not found')
        if request.method in ("PATCH", "PUT"):
            body = await request.json()
            current = self._scale_of(deployment)
            if request.method == "PUT":
                sent = (body.get("metadata") or {}).get("resourceVersion")
                if sent and sent != current["metadata"]["resourceVersion"]:
                    return self._status(409, "Conflict", f"the object has been modified; deployments {name}")
                new = body
            else:
                new = _merge_patch(current, body)
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                return self._status(422, "Invalid", f"Scale.autoscaling \"{name}\" is invalid: spec.replicas: "
                                    f"Invalid value: {replicas!r}: must be greater than or equal to 0")
            self.scale_writes.append({"namespace": deployment["metadata"]["namespace"], "name": name,
                                      "method": request.method, "content_type": request.content_type,
                                      "replicas": replicas, "at": time.time()})
            updated = copy.deepcopy(deployment)
            updated.setdefault("spec", {})["replicas"] = replicas
            deployment = self._put(plural, updated)
        elif request.method != "GET":
            return self._status(405, "MethodNotAllowed", request.method)
        return web.json_response(self._scale_of(deployment))

    @staticmethod
    def _scale_of(deployment: dict[str, Any]) -> dict[str, Any]:
        meta = deployment["metadata"]
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
                "spec": {"replicas": (deployment.get("spec") or {}).get("replicas", 1)},
                "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}

    def _status(self, code: int, reason: str, message: str) -> web.Response:
        # exactly "application/json", as the API server sends it (lightkube turns only that into ApiError)
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
                "message": message}
        return web.Response(body=json.dumps(body).encode(), status=code, headers={"Content-Type": "application/json"})

    def _matching(self, plural: str, ns: str | None, selector: str | None) -> list[dict[str, Any]]:
        return [o for (p, o_ns, _n), o in sorted(self.objects.items())
                if p == plural and ns in (None, o_ns)
                and _selector_matches(selector, o["metadata"].get("labels") or {})]

    def _list(self, request: web.Request, plural: str, ns: str | None) -> web.Response:
        _g, _v, kind, _n = KINDS[plural]
        return web.json_response({"kind": f"{kind}List", "apiVersion": api_version(plural),
                                  "metadata": {"resourceVersion": str(self.rv)},
                                  "items": self._matching(plural, ns, request.query.get("labelSelector"))})

    async def _watch(self, request: web.Request, plural: str, ns: str | None) -> web.StreamResponse:
        if self._refusals.get(plural):
            self._refusals[plural] -= 1
            return self._status(500, "InternalError", "the watch was refused (test hook)")
        since = request.query.get("resourceVersion")
        selector = request.query.get("labelSelector")
        timeout = float(request.query.get("timeoutSeconds", "300"))
        bookmarks = request.query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)

        async def send(kind: str, obj: dict[str, Any]) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        if since and since != "0" and int(since) < self.compacted:
            await send("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                 "reason": "Expired", "message": f"too old resource version: {since}"})
            return resp
        w = _Watch(plural, ns, selector)
        if since and since != "0":
            for rv, p, kind, obj in self.events:
                if rv > int(since) and self._wants(w, p, obj):
                    w.queue.put_nowait((kind, obj))
        else:
            for obj in self._matching(plural, ns, selector):
                w.queue.put_nowait(("ADDED", obj))
        self._watches.append(w)
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                wait = min(left, self.bookmark_interval) if bookmarks else left
                try:
                    kind, obj = await asyncio.wait_for(w.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and self._paused is None:
                        self.bookmarks_sent += 1
                        await send("BOOKMARK", {"kind": KINDS[plural][2], "apiVersion": api_version(plural),
                                                "metadata": {"resourceVersion": str(self.rv)}})
                    continue
                if kind != "ERROR" and int(obj["metadata"]["resourceVersion"]) <= int(since or 0):
                    continue
                await send(kind, obj)
                if kind == "ERROR":
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watches.remove(w)
        return resp
