"""The ``kubernetes`` executor: a revision is a Deployment; the gateway sets its replicas and routes to its pods.

Scaling writes the Deployment's ``scale`` subresource (``PATCH /apis/apps/v1/namespaces/{ns}/deployments/
{name}/scale``, a merge patch of ``spec.replicas``), only when the wish changes or the last write failed; the
cluster's controllers do the rest. Instances come from the EndpointSlices of ``service`` (label
``kubernetes.io/service-name``; list + watch through the Kubernetes provider's reflector, so 410 relists and
reconnects behave alike), one per endpoint address on ``port`` (the slice port of that name or number; the
slice's only port when unset), de-duplicated across slices. An endpoint's conditions give its state:
``terminating`` → ``terminating``; ``ready`` true or unset (the API says unknown means ready) → ``ready``;
otherwise ``starting``.

The cluster client is the provider's (``kubeconfig``, ``context``, in-cluster service account, ``~/.kube/
config``). ``close`` stops watching and leaves the Deployment at its count: the pods are the cluster's, and
other gateway replicas (or the next leader) go on deciding for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lightkube import ApiError, AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from ...providers.kubernetes.client import make_client
from ...providers.kubernetes.endpoints import SERVICE_NAME_LABEL
from ...providers.kubernetes.watch import Kind, Reflector
from ..executor import Instance, State
from .reconcile import ExecutorError, Reconciler
from .settings import Reader

SLICES = Kind("EndpointSlice", EndpointSlice, namespaced=True, selected=True)


@dataclass(frozen=True)
class KubernetesSettings:
    deployment: str
    service: str
    namespace: str
    port: str
    kubeconfig: str
    context: str
    max_backoff: float

    @classmethod
    def read(cls, r: Reader) -> KubernetesSettings:
        deployment = r.string("deployment", required=True)
        out = cls(deployment=deployment, service=r.string("service", deployment), namespace=r.string("namespace"),
                  port=r.port_ref("port"), kubeconfig=r.string("kubeconfig"),
                  context=r.string("context"), max_backoff=r.duration("max_backoff", 30.0))
        return out


class KubernetesExecutor(Reconciler):
    kind: ClassVar[str] = "kubernetes"
    shared: ClassVar[bool] = True
    settings_type = KubernetesSettings
    config: KubernetesSettings

    def __init__(self, service: str, revision: str, settings: Mapping[str, Any],
                 on_change: Callable[[], None]) -> None:
        super().__init__(service, revision, settings, on_change)
        self.client: AsyncClient | None = None
        self.slices: Reflector | None = None
        self.namespace = self.config.namespace
        self.applied: int | None = None             # the replicas last written to the scale subresource

    def describe(self) -> dict[str, Any]:
        watch = self.slices.snapshot() if self.slices else None
        return {**super().describe(), "deployment": f"{self.namespace or '?'}/{self.config.deployment}",
                "applied": self.applied, "endpointslices": watch}

    async def setup(self) -> None:
        if self.client is None:
            self.client = make_client({"kubeconfig": self.config.kubeconfig or None,
                                       "context": self.config.context or None})
            self.namespace = self.config.namespace or self.client.namespace
        if self.slices is None:
            self.slices = Reflector(self.client, SLICES, [self.namespace],
                                    f"{SERVICE_NAME_LABEL}={self.config.service}", self._slices_changed)
            self.slices.start()

    async def reconcile(self, desired: int) -> None:
        if desired == self.applied:
            return
        assert self.client is not None
        try:
            await self.client.patch(Deployment.Scale, self.config.deployment, {"spec": {"replicas": desired}},
                                    namespace=self.namespace, patch_type=PatchType.MERGE)
        except ApiError as e:
            raise ExecutorError(f"scaling deployment {self.namespace}/{self.config.deployment} to {desired}: "
                                f"{e.status.code} {e.status.reason}: {e.status.message}") from None
        self.applied = desired

    def _slices_changed(self) -> None:
        assert self.slices is not None
        wanted = self.config.port
        found: dict[str, Instance] = {}
        for eps in self.slices.objects():
            ports = eps.get("ports") or []
            number = next((p.get("port") for p in ports if wanted in (p.get("name") or "", str(p.get("port")))),
                          None) if wanted else (ports[0].get("port") if len(ports) == 1 else None)
            if number is None:
                continue
            v6 = eps.get("addressType") == "IPv6"
            for endpoint in eps.get("endpoints") or []:
                cond = endpoint.get("conditions") or {}
                state: State = ("terminating" if cond.get("terminating") else
                                "starting" if cond.get("ready") is False else "ready")
                pod = (endpoint.get("targetRef") or {}).get("name")
                for ip in endpoint.get("addresses") or []:
                    address = f"[{ip}]:{number}" if v6 else f"{ip}:{number}"
                    found[address] = Instance(id=pod or address, address=address, state=state)
        self.set_instances(dict(sorted(found.items())))

    async def release(self) -> None:
        if self.slices is not None:
            await self.slices.stop()
            self.slices = None
        if self.client is not None:
            await self.client.close()
            self.client = None
