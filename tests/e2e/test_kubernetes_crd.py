"""Our ``a3s.io/v1alpha1`` ``Route`` CRD through the real binary: the gateway's own router/service/middleware
tables from the cluster, checked by the same validator, with the validation errors written to the object's
status while the rest keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import wait_until
from kube_apiserver import FakeApiServer
from kube_support import config, kube_state


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


def route(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {"kind": "Route", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_a_route_with_two_middlewares_is_served_and_an_invalid_one_is_reported_in_its_status(
        api, backends, gateway, tmp_path):
    app = backends("app")
    api.apply(route("shop", {
        "routers": {"shop": {"rule": "Host(`shop.test`) && PathPrefix(`/api`)", "service": "app",
                             "middlewares": ["strip", "tag"]}},
        "services": {"app": {"load_balancer": {"servers": [{"url": app.url}]}}},
        "middlewares": {"strip": {"type": "strip-prefix", "prefixes": ["/api"]},
                        "tag": {"type": "headers", "request_headers": {"X-From": "crd"}}}}),
        route("broken", {"routers": {"r": {"rule": "Host(`broken.test`)", "service": "nowhere"}}}),
        route("shapeless", {"routers": ["not", "a", "table"]}))
    gw = gateway(config(api, tmp_path, provider="crd = true"))

    def shop() -> dict[str, Any] | int:
        r = httpx.get(gw.url + "/api/items", headers={"Host": "shop.test"}, timeout=5)
        return r.json() if r.status_code == 200 else r.status_code

    wait_until(lambda: isinstance(shop(), dict), timeout=20, what="the CRD's router served")
    answer = shop()
    assert answer["path"] == "/items" and answer["headers"]["x-from"] == ["crd"]
    assert httpx.get(gw.url, headers={"Host": "broken.test"}, timeout=5).status_code == 404
    broken = wait_until(lambda: (api.get("Route", "broken", "default") or {}).get("status"), what="broken status")
    assert broken["valid"] is False and "nowhere" in " ".join(broken["errors"])
    shapeless = wait_until(lambda: (api.get("Route", "shapeless", "default") or {}).get("status"),
                           what="shapeless status")
    assert shapeless["valid"] is False and "routers" in shapeless["errors"][0]
    assert wait_until(lambda: (api.get("Route", "shop", "default") or {}).get("status"),
                      what="shop status") == {"valid": True, "errors": []}
    state = kube_state(gw)
    assert state["routers"] == 1 and state["services"] == 1
    routers = {r["name"]: r for r in httpx.get(gw.admin + "/api/routers", timeout=5).json()}
    assert routers["default-shop-shop@crd"]["provider"] == "crd"
    mws = {m["name"] for m in httpx.get(gw.admin + "/api/middlewares", timeout=5).json()}
    assert {"default-shop-strip@crd", "default-shop-tag@crd"} <= mws
    assert set(state["errors"]) == {"Route default/broken", "Route default/shapeless"}
