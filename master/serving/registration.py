"""Instances announcing themselves: the admin API's registration endpoint for ``http``-executor revisions.

In the standalone Box mode the gateway cannot see the instances something else starts, so each one tells it:

- ``POST /api/serving/register`` with ``{"service", "revision", "address": "host:port", "id"?, "state"?}``
  (``id`` defaults to the address; ``state`` is ``ready`` unless it says ``starting`` or ``terminating``;
  registering the same id again updates it), answered ``200 {"id", "address", "state"}``;
- ``POST /api/serving/deregister`` with ``{"service", "revision", "id"}`` (or ``"address"``), answered
  ``200 {"removed": true|false}``.

Both need ``Authorization: Bearer <registration_token>`` of that revision (compared in constant time; 401
otherwise) instead of the admin token, so an instance holds a credential good for its own revision only. A
revision no ``http`` executor serves is 404; a malformed body is 400. No answer, log line or ``describe`` ever
shows a token.

Invariants: registrations belong to (service, revision), not to an executor object, so a reload that keeps the
revision keeps them; they go when the revision's executor closes. The registry is the node's one instance
(``REGISTRY``; the master is one process), read by the executors and written by the routes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import orjson
from aiohttp import web

from .executor import Instance, State

PATHS = ("/api/serving/register", "/api/serving/deregister")
STATES = get_args(State)


class Refused(Exception):
    """A registration call that cannot be honoured: its HTTP status and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass
class _Revision:
    token: str
    on_change: Callable[[], None]
    instances: dict[str, Instance] = field(default_factory=dict)


class Registrations:
    """The registered instances of every ``http``-executor revision on this node."""

    def __init__(self) -> None:
        self._revisions: dict[tuple[str, str], _Revision] = {}

    # -- the executors' side
    def open(self, service: str, revision: str, token: str, on_change: Callable[[], None]) -> None:
        """Accept registrations for the revision (again, after a reload: its instances are kept)."""
        kept = self._revisions.get((service, revision))
        self._revisions[(service, revision)] = _Revision(token, on_change, kept.instances if kept else {})

    def close(self, service: str, revision: str, on_change: Callable[[], None]) -> None:
        """Forget the revision, unless a newer executor (another ``on_change``) opened it since."""
        entry = self._revisions.get((service, revision))
        if entry is not None and entry.on_change is on_change:
            del self._revisions[(service, revision)]

    def instances(self, service: str, revision: str) -> list[Instance]:
        entry = self._revisions.get((service, revision))
        return list(entry.instances.values()) if entry else []

    # -- the instances' side
    def _entry(self, token: str, service: str, revision: str) -> _Revision:
        entry = self._revisions.get((service, revision))
        if entry is None:
            raise Refused(404, f"no http-executor revision {service}/{revision} on this gateway")
        if not hmac.compare_digest(token.encode(), entry.token.encode()):
            raise Refused(401, f"wrong registration token for {service}/{revision}")
        return entry

    def register(self, token: str, service: str, revision: str, address: str, id: str | None = None,
                 state: str = "ready") -> Instance:
        entry = self._entry(token, service, revision)
        if state not in STATES:
            raise Refused(400, f"state: expected one of {', '.join(STATES)}, got {state!r}")
        instance = Instance(id=id or address, address=_checked_address(address), state=state)  # type: ignore[arg-type]
        if entry.instances.get(instance.id) != instance:
            entry.instances[instance.id] = instance
            entry.on_change()
        return instance

    def deregister(self, token: str, service: str, revision: str, id: str | None = None,
                   address: str | None = None) -> bool:
        entry = self._entry(token, service, revision)
        gone = [k for k, i in entry.instances.items() if k == id or (address is not None and i.address == address)]
        for key in gone:
            del entry.instances[key]
        if gone:
            entry.on_change()
        return bool(gone)


def _checked_address(address: str) -> str:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Refused(400, f"address: expected 'host:port', got {address!r}")
    return address


REGISTRY = Registrations()


def handles(path: str) -> bool:
    """Whether the admin API leaves this path's authentication to the registration token."""
    return path in PATHS


def add_routes(app: web.Application, registry: Registrations = REGISTRY) -> None:
    """Mount the two routes on an aiohttp app (the admin API's)."""

    async def call(request: web.Request, action: str) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Refused(401, "send 'Authorization: Bearer <registration_token>'")
            try:
                body: Any = orjson.loads(await request.read())
            except orjson.JSONDecodeError as e:
                raise Refused(400, f"the body is not JSON: {e}") from None
            if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("service", "revision")):
                raise Refused(400, "expected a JSON object with string 'service' and 'revision'")
            extra = {k: body[k] for k in ("id", "address", "state") if isinstance(body.get(k), str)}
            if action == "register":
                if "address" not in extra:
                    raise Refused(400, "address: required ('host:port')")
                i = registry.register(token.strip(), body["service"], body["revision"], **extra)
                answer: dict[str, Any] = {"id": i.id, "address": i.address, "state": i.state}
            else:
                extra.pop("state", None)
                if not extra:
                    raise Refused(400, "id or address: required")
                answer = {"removed": registry.deregister(token.strip(), body["service"], body["revision"], **extra)}
        except Refused as e:
            headers = {"WWW-Authenticate": 'Bearer realm="a3s-gateway serving"'} if e.status == 401 else None
            return web.json_response({"error": str(e)}, status=e.status, headers=headers)
        return web.json_response(answer)

    async def register(request: web.Request) -> web.Response:
        return await call(request, "register")

    async def deregister(request: web.Request) -> web.Response:
        return await call(request, "deregister")

    app.router.add_post(PATHS[0], register)
    app.router.add_post(PATHS[1], deregister)
