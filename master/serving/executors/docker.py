"""The ``docker`` executor: a revision's instances are containers, run through the Docker Engine API.

Each instance is one container created from ``image`` with ``command`` (``{port}`` filled in every argument and
every ``env`` value, and ``PORT`` set) on the host network by default, so it listens on ``host_address:{port}``
with a port taken from ``ports``; on another ``network`` it is reached at its address there. Labels say
which containers are ours: ``a3s.serving.service``, ``a3s.serving.revision``, ``a3s.serving.instance`` (and
``a3s.serving.port``), so a restarted gateway finds what it left running (it adopts running containers and
removes stopped ones) and nothing else is ever touched.

The view is kept by listing our containers (label filter) after every change and on every daemon event about
them (``GET /events`` with the same filter). A container that stops without being asked is an error: its exit
code and last log line go to ``last_error``, it is removed and replaced after the backoff. The image must be on
the daemon already (nothing is pulled): a missing image is an error like any other.

Invariants: a container is only created with all four labels; ``scale`` down stops the newest starting
containers first, then the newest ready ones (``stop_timeout``, then a forced remove); ``close`` removes every
container of the revision.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from ... import docker_engine
from ...docker_engine import API, CONTAINER_EVENTS
from ..executor import Instance, State
from .reconcile import ExecutorError, Reconciler, log
from .settings import Reader

LABEL = "a3s.serving"
_CALL_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True)
class DockerSettings:
    socket: str
    image: str
    command: list[str]
    env: dict[str, str]
    ports: range
    network: str
    host_address: str
    stop_timeout: float
    max_backoff: float

    @classmethod
    def read(cls, r: Reader) -> DockerSettings:
        out = cls(socket=r.string("socket", "/var/run/docker.sock"), image=r.string("image", required=True),
                  command=r.strings("command"), env=r.table("env"), ports=r.port_range("ports", "30000-30999"),
                  network=r.string("network", "host"), host_address=r.string("host_address", "127.0.0.1"),
                  stop_timeout=r.duration("stop_timeout", 10.0), max_backoff=r.duration("max_backoff", 30.0))
        return out


class DockerExecutor(Reconciler):
    kind: ClassVar[str] = "docker"
    settings_type = DockerSettings
    config: DockerSettings

    def __init__(self, service: str, revision: str, settings: Mapping[str, Any],
                 on_change: Callable[[], None]) -> None:
        super().__init__(service, revision, settings, on_change)
        self.session: aiohttp.ClientSession | None = None
        self.filters = json.dumps({"label": [f"{LABEL}.service={service}", f"{LABEL}.revision={revision}"]})
        self._ports: dict[str, int] = {}                 # container id → port, for every container of ours
        self._created: dict[str, int] = {}               # container id → creation time (the daemon's)
        self._died: set[str] = set()                     # "die" events seen (a listing may still say running)
        self._reserved: set[int] = set()                 # ports chosen for containers being created
        self._refreshing = asyncio.Lock()
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._events: asyncio.Task[None] | None = None
        self._last_crash = float("-inf")

    # -- the engine
    async def _call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204, 304),
                    **params: str) -> Any:
        assert self.session is not None
        async with self.session.request(method, f"/{API}{path}", json=body, params=params,
                                        timeout=_CALL_TIMEOUT) as r:
            data = await r.read()
            if r.status not in ok:
                message = data.decode(errors="replace")
                try:
                    message = json.loads(data)["message"]
                except (ValueError, KeyError, TypeError):
                    pass
                raise EngineError(r.status, message)
            return json.loads(data) if data and r.content_type == "application/json" else data

    async def setup(self) -> None:
        if self.session is None:
            self.session = docker_engine.session(f"unix://{self.config.socket}")
        await self.refresh(adopting=True)
        self._events = asyncio.get_running_loop().create_task(self._follow_events(),
                                                              name=f"serving-docker-events-{self.revision}")

    async def refresh(self, adopting: bool = False) -> None:
        """Read our containers and publish them as instances; remove the ones that stopped on their own (and,
        when adopting what a previous run left, every one that is not running)."""
        async with self._refreshing:
            listed = await self._call("GET", "/containers/json", all="1", filters=self.filters)
            instances: dict[str, Instance] = {}
            ports: dict[str, int] = {}
            for c in listed:
                cid, labels = c["Id"], c.get("Labels") or {}
                dead = (c["State"] in ("exited", "dead") or cid in self._died
                        or (adopting and c["State"] != "running"))
                if dead and cid not in self._stopping:
                    if not adopting:
                        await self._crashed(cid)
                    await self._call("DELETE", f"/containers/{cid}", ok=(204, 404, 409), force="true")
                    continue
                ports[cid] = port = int(labels.get(f"{LABEL}.port") or 0)
                self._created[cid] = int(c.get("Created") or 0)
                state: State = ("terminating" if cid in self._stopping else
                                "starting" if c["State"] != "running" or "health: starting" in (c.get("Status") or "")
                                else "ready")
                instances[cid] = Instance(id=cid, address=self._address(c, port), state=state)
            self._ports = ports
            self._died &= set(ports)
            self._created = {cid: t for cid, t in self._created.items() if cid in ports}
            self.set_instances(instances)
        if adopting and instances:
            log.info(f"serving {self.service}/{self.revision}: adopted {len(instances)} running container(s)")

    def _address(self, container: dict[str, Any], port: int) -> str:
        if self.config.network == "host":
            return f"{self.config.host_address}:{port}"
        networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (networks.get(self.config.network) or {}).get("IPAddress")
        return f"{ip or self.config.host_address}:{port}"

    async def _crashed(self, cid: str) -> None:
        detail = await self._call("GET", f"/containers/{cid}/json", ok=(200,))
        code = (detail.get("State") or {}).get("ExitCode")
        raw = await self._call("GET", f"/containers/{cid}/logs", ok=(200,), stdout="1", stderr="1", tail="3")
        last = _log_lines(raw)[-1:] or ["(no output)"]
        self._last_crash = time.monotonic()
        self.failed(f"container {cid[:12]} exited with code {code}: {last[0][:300]}")
        self.wake()

    async def _follow_events(self) -> None:
        """Refresh on every daemon event about our containers; reconnect after a pause when the stream ends."""
        assert self.session is not None
        filters = json.dumps({"type": ["container"], **json.loads(self.filters)})
        while True:
            try:
                async with self.session.get(f"/{API}/events", params={"filters": filters},
                                            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as r:
                    r.raise_for_status()
                    await self.refresh()            # what happened while not following
                    async for line in r.content:
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue                # a torn line: the next event's refresh sees the state
                        action = str(event.get("Action", "")).partition(":")[0]
                        if action == "die":
                            self._died.add(event.get("id", ""))
                        if action in CONTAINER_EVENTS:
                            await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — the stream is resumed; reconcile reports a dead daemon
                log.debug(f"serving {self.revision}: docker events stream ended: {e!r}")
            await asyncio.sleep(1.0)

    # -- moving toward desired
    async def reconcile(self, desired: int) -> None:
        await self.refresh()
        live = [i for i in self._instances.values() if i.state != "terminating"]
        if len(live) < desired:
            await asyncio.gather(*(self._run_one() for _ in range(desired - len(live))))
        elif len(live) > desired:
            order = {"starting": 0, "ready": 1}
            by_age = sorted(live, key=lambda i: (order[i.state], -self._created.get(i.id, 0)))
            for victim in by_age[: len(live) - desired]:
                self._stopping[victim.id] = asyncio.get_running_loop().create_task(self._stop(victim.id))
        await self.refresh()

    async def _run_one(self) -> None:
        port = self._free_port()
        try:
            await self._create(port)
        finally:
            self._reserved.discard(port)

    async def _create(self, port: int) -> None:
        instance = secrets.token_hex(4)
        fill = lambda text: text.replace("{port}", str(port))  # noqa: E731
        name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"a3s-{self.service}-{self.revision}-{instance}")
        body: dict[str, Any] = {
            "Image": self.config.image,
            "Env": [f"PORT={port}", *(f"{k}={fill(v)}" for k, v in self.config.env.items())],
            "Labels": {f"{LABEL}.service": self.service, f"{LABEL}.revision": self.revision,
                       f"{LABEL}.instance": instance, f"{LABEL}.port": str(port)},
            "HostConfig": {"NetworkMode": self.config.network},
        }
        if self.config.command:
            body["Cmd"] = [fill(arg) for arg in self.config.command]
        try:
            created = await self._call("POST", "/containers/create", body, ok=(201,), name=name)
        except EngineError as e:
            if e.status == 404:
                raise ExecutorError(f"image {self.config.image!r} is not on the daemon (pull it first): "
                                    f"{e.message}") from None
            raise
        cid = created["Id"]
        self._ports[cid] = port
        try:
            await self._call("POST", f"/containers/{cid}/start")
        except EngineError:
            await self._call("DELETE", f"/containers/{cid}", ok=(204, 404), force="true")
            raise

    def _free_port(self) -> int:
        """The lowest port of the range that no container of ours holds and nothing on the host listens on."""
        taken = set(self._ports.values()) | self._reserved
        for port in self.config.ports:
            if port not in taken and _bindable(self.config.host_address, port):
                self._reserved.add(port)
                return port
        raise ExecutorError(f"no free port left in ports {self.config.ports.start}-{self.config.ports.stop - 1}")

    async def _stop(self, cid: str) -> None:
        try:
            await self._call("POST", f"/containers/{cid}/stop", ok=(204, 304, 404),
                             t=str(int(self.config.stop_timeout)))
            await self._call("DELETE", f"/containers/{cid}", ok=(204, 404), force="true")
        except Exception as e:  # noqa: BLE001 — recorded; the next refresh still lists it and tries again
            self.failed(f"cannot stop container {cid[:12]}: {e}")
        finally:
            self._stopping.pop(cid, None)
        await self.refresh()

    def stable(self) -> bool:
        return time.monotonic() - self._last_crash > 2 * self.max_backoff

    # -- lifecycle
    async def stop_instances(self) -> None:
        if self.session is None:
            return                              # never set up: nothing was started
        for cid in list(self._ports):
            if cid not in self._stopping:
                self._stopping[cid] = asyncio.get_running_loop().create_task(self._stop(cid))
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)

    async def release(self) -> None:
        if self._events is not None:
            self._events.cancel()
            await asyncio.gather(self._events, return_exceptions=True)
            self._events = None
        if self.session is not None:
            await self.session.close()
            self.session = None


class EngineError(Exception):
    """The daemon refused a call."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"docker engine answered {status}: {message}")
        self.status = status
        self.message = message


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _log_lines(raw: bytes) -> list[str]:
    """The text of a non-TTY container's log stream (frames of an 8-byte header and a payload)."""
    out, i = [], 0
    while i + 8 <= len(raw):
        size = int.from_bytes(raw[i + 4:i + 8], "big")
        out.append(raw[i + 8:i + 8 + size].decode(errors="replace"))
        i += 8 + size
    return [line for line in "".join(out).splitlines() if line.strip()]
