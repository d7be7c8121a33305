"""The ``kubernetes`` executor against the fake API server: scale PATCHes of the Deployment's ``scale``
subresource, instances from EndpointSlices (list + watch) with their ready/serving/terminating conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from a3s_gateway.master.serving.executor import Instance
from a3s_gateway.master.serving.executors.kubernetes import KubernetesExecutor
from kube_apiserver import FakeApiServer
from serving_support import Changes, until


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


def deployment(name: str = "web", replicas: int = 0) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}}}


def endpoint(ip: str, pod: str | None = None, ready: bool | None = True, terminating: bool = False) -> dict[str, Any]:
    conditions: dict[str, Any] = {"serving": bool(ready), "terminating": terminating}
    if ready is not None:
        conditions["ready"] = ready
    out: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if pod:
        out["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "default"}
    return out


def endpoint_slice(name: str, service: str, *endpoints: dict[str, Any], port: int = 8080) -> dict[str, Any]:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}], "endpoints": list(endpoints)}


def executor(api: FakeApiServer, tmp_path: Path, changes: Changes, **more: Any) -> KubernetesExecutor:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    return KubernetesExecutor("svc", "v1", {"deployment": "web", "kubeconfig": str(kubeconfig), "port": "http",
                                            "max_backoff": "400ms", **more}, changes)


def test_scale_patches_the_deployment_scale_subresource_only_when_the_wish_changes(api, tmp_path):
    api.apply(deployment(replicas=0))

    async def main() -> None:
        ex = executor(api, tmp_path, Changes())
        try:
            await ex.scale(2)
            await until(lambda: ex.applied == 2, 10, "the first scale write")
            await ex.scale(2)
            await ex.scale(3)
            await until(lambda: ex.applied == 3, 10, "the second scale write")
            await ex.scale(0)
            await until(lambda: ex.applied == 0, 10, "scale to zero")
        finally:
            await ex.close()
    asyncio.run(main())
    writes = [(w["name"], w["method"], w["content_type"], w["replicas"]) for w in api.scale_writes]
    assert writes == [("web", "PATCH", "application/merge-patch+json", n) for n in (2, 3, 0)]
    assert api.get("Deployment", "web", "default")["spec"]["replicas"] == 0
    scale_paths = [q for m, q in api.requests if m == "PATCH"]
    assert scale_paths == ["/apis/apps/v1/namespaces/default/deployments/web/scale?fieldManager=a3s-gateway"] * 3


def test_endpointslice_changes_are_reflected_in_instances_with_their_conditions(api, tmp_path):
    api.apply(deployment(replicas=2), endpoint_slice("web-a", "web", endpoint("10.0.0.1", "web-1"),
                                                     endpoint("10.0.0.2", "web-2", ready=False)),
              endpoint_slice("other-a", "other", endpoint("10.9.9.9", "other-1")))

    async def main() -> None:
        changes = Changes()
        ex = executor(api, tmp_path, changes)
        try:
            await ex.scale(2)
            await until(lambda: len(ex.instances()) == 2, 10, "the listed slice")
            assert ex.instances() == [Instance("web-1", "10.0.0.1:8080", "ready"),
                                      Instance("web-2", "10.0.0.2:8080", "starting")]
            # web-2 becomes ready; web-1 is being deleted (still serving, terminating)
            api.apply(endpoint_slice("web-a", "web", endpoint("10.0.0.1", "web-1", ready=False, terminating=True),
                                     endpoint("10.0.0.2", "web-2")))
            await until(lambda: ex.instances()[0].state == "terminating", 10, "the watched update")
            assert ex.instances() == [Instance("web-1", "10.0.0.1:8080", "terminating"),
                                      Instance("web-2", "10.0.0.2:8080", "ready")]
            # a second slice of the same service adds a pod (an unknown ready counts as ready) and repeats one
            api.apply(endpoint_slice("web-b", "web", endpoint("10.0.0.3", ready=None), endpoint("10.0.0.2", "web-2")))
            await until(lambda: len(ex.instances()) == 3, 10, "the second slice")
            assert ex.instances()[2] == Instance("10.0.0.3:8080", "10.0.0.3:8080", "ready")
            api.delete("EndpointSlice", "web-a", "default")
            await until(lambda: [i.id for i in ex.instances()] == ["web-2", "10.0.0.3:8080"], 10, "the deletion")
            assert changes.calls == 4
        finally:
            await ex.close()
        assert ex.instances() == []
    asyncio.run(main())
    selectors = [q for q in api.watch_requests("endpointslices")]
    assert selectors and all("labelSelector=kubernetes.io%2Fservice-name%3Dweb" in q for q in selectors)


def test_a_missing_deployment_is_an_error_retried_with_backoff_until_it_exists(api, tmp_path):
    async def main() -> None:
        ex = executor(api, tmp_path, Changes())
        try:
            await ex.scale(1)
            await until(lambda: ex.errors >= 2, 10, "repeated failures")
            assert ex.last_error.startswith("scaling deployment default/web to 1: 404 NotFound")
            assert ex.applied is None and ex.describe()["deployment"] == "default/web"
            api.apply(deployment())
            await until(lambda: ex.applied == 1, 10, "the retry once the deployment exists")
            assert ex.last_error is None
        finally:
            await ex.close()
    asyncio.run(main())
    assert api.get("Deployment", "web", "default")["spec"]["replicas"] == 1


def test_validate_names_each_bad_key():
    assert KubernetesExecutor.validate({"deployment": "web", "port": 8080, "namespace": "apps"}) == []
    assert KubernetesExecutor.validate({"port": 0, "max_backoff": -1, "replicas": 2}) == [
        "deployment: required",
        "port: expected a port name or a number within 1-65535, got 0",
        "max_backoff: expected a duration like '10s' or '500ms', got -1",
        "replicas: unknown setting (known: context, deployment, kubeconfig, max_backoff, namespace, port, service)"]


def test_a_slice_deleted_while_the_watch_was_compacted_away_is_dropped_after_the_relist(api, tmp_path):
    api.apply(deployment(replicas=2), endpoint_slice("web-a", "web", endpoint("10.0.0.1", "web-1")),
              endpoint_slice("web-b", "web", endpoint("10.0.0.2", "web-2")))

    async def main() -> None:
        ex = executor(api, tmp_path, Changes())
        try:
            await ex.scale(2)
            await until(lambda: len(ex.instances()) == 2, 10, "both slices")
            api.pause()                         # a gap: the deletion's event never reaches the watch
            api.delete("EndpointSlice", "web-b", "default")
            api.compact()                       # ... and the history is gone: 410, relist, diff
            await until(lambda: [i.id for i in ex.instances()] == ["web-1"], 10, "the relist to drop web-2")
            assert ex.describe()["endpointslices"]["expired"] >= 1
        finally:
            await ex.close()
    asyncio.run(main())
