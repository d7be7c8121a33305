"""The ``http`` executor (the standalone Box mode): something else runs the instances; the gateway says how many.

Scaling is one call: ``POST scale_url`` with ``{"service", "revision", "replicas"}`` (JSON), and
``Authorization: Bearer <token>`` when ``token`` (or ``token_env``, the name of an environment variable holding
it) is set. Any 2xx is an acknowledgement; anything else, or no answer within ``timeout``, is an error retried
with the backoff. The count is posted again only when it changes (or after a failure), so the autoscaler's
repeated decisions cost nothing.

Instances are what registered for the revision through the admin API (``registration.py``), with that
revision's ``registration_token``. ``close`` (the gateway stopping, or the revision removed) posts ``replicas:
0`` once, best effort, and forgets the revision's registrations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from ..executor import Instance
from ..registration import REGISTRY, Registrations
from .reconcile import ExecutorError, Reconciler, log
from .settings import Reader


@dataclass(frozen=True)
class HttpSettings:
    scale_url: str
    token: str
    registration_token: str
    timeout: float
    max_backoff: float

    @classmethod
    def read(cls, r: Reader) -> HttpSettings:
        out = cls(scale_url=r.string("scale_url", required=True), token=r.secret("token"),
                  registration_token=r.secret("registration_token"), timeout=r.duration("timeout", 5.0),
                  max_backoff=r.duration("max_backoff", 30.0))
        if out.scale_url and not out.scale_url.startswith(("http://", "https://")):
            r.errors.append(f"scale_url: expected an http:// or https:// URL, got {out.scale_url!r}")
        if not out.registration_token and "registration_token_env" not in r.raw:
            r.errors.append("registration_token: required (instances send it to register; or registration_token_env)")
        return out


class HttpExecutor(Reconciler):
    kind: ClassVar[str] = "http"
    shared: ClassVar[bool] = True
    settings_type = HttpSettings
    config: HttpSettings
    registry: ClassVar[Registrations] = REGISTRY

    def __init__(self, service: str, revision: str, settings: Mapping[str, Any],
                 on_change: Callable[[], None]) -> None:
        super().__init__(service, revision, settings, on_change)
        self.acknowledged: int | None = None          # the count the scale URL last accepted
        self.session: aiohttp.ClientSession | None = None
        self.registry.open(service, revision, self.config.registration_token, on_change)

    def instances(self) -> list[Instance]:
        return self.registry.instances(self.service, self.revision)

    def adopt(self, previous: Any) -> None:
        super().adopt(previous)
        if isinstance(previous, HttpExecutor):
            self.acknowledged = previous.acknowledged

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "acknowledged": self.acknowledged}

    async def reconcile(self, desired: int) -> None:
        if desired != self.acknowledged:
            await self._post(desired)
            self.acknowledged = desired

    async def _post(self, replicas: int) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        body = {"service": self.service, "revision": self.revision, "replicas": replicas}
        try:
            async with self.session.post(self.config.scale_url, json=body, headers=headers) as r:
                if not 200 <= r.status < 300:
                    text = (await r.text(errors="replace"))[:200]
                    raise ExecutorError(f"scale URL {self.config.scale_url} answered {r.status}: {text}")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise ExecutorError(f"cannot reach scale URL {self.config.scale_url}: "
                                f"{str(e) or type(e).__name__}") from None

    async def stop_instances(self) -> None:
        try:
            if self.acknowledged:
                await self._post(0)
        except ExecutorError as e:
            log.warning(f"serving {self.service}/{self.revision}: scaling to 0 on close failed: {e}")
        finally:
            self.registry.close(self.service, self.revision, self.on_change)

    async def release(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
