"""Our ``a3s.io/v1alpha1`` ``Route`` and ``Middleware`` CRDs through the real binary: the gateway's own
router/service/middleware tables from the cluster, checked by the same validator, with the validation errors (and
their key paths inside the object) written to the object's status while the rest keeps serving; Middleware
objects used by Routes and by Ingresses' annotation; a bad update keeps the last good version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import wait_until
from kube_apiserver import FakeApiServer
from kube_support import config, ingress, ingress_class, kube_state, path, rule, service, slice_for


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


def middleware(name: str, spec: Any, namespace: str = "default") -> dict[str, Any]:
    return {"kind": "Middleware", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_middleware_objects_serve_routes_and_ingresses_and_a_bad_update_keeps_the_last_good_one(
        api, backends, gateway, tmp_path):
    app = backends("app")
    api.apply(
        service("app"), slice_for("app", [app.port]), ingress_class(),
        middleware("strip", {"type": "strip-prefix", "prefixes": ["/api"]}),
        middleware("tag", {"type": "headers", "request_headers": {"X-From": "middleware-crd"}}),
        middleware("bad", {"type": "rate-limit", "rate": -5}),
        middleware("typeless", {"prefixes": ["/x"]}),
        route("shop", {"routers": {"r": {"rule": "Host(`shop.test`)", "service": "s",
                                         "middlewares": ["strip", "tag"]}},
                       "services": {"s": {"load_balancer": {"servers": [{"url": app.url}]}}}}),
        route("limited", {"routers": {"r": {"rule": "Host(`limited.test`)", "service": "s", "middlewares": ["bad"]}},
                          "services": {"s": {"load_balancer": {"servers": [{"url": app.url}]}}}}),
        ingress("web", [rule("web.test", path("/", "app"))], annotations={"a3s.io/router.middlewares": "tag"}))
    gw = gateway(config(api, tmp_path, provider="crd = true"))

    def seen(host: str, url_path: str = "/") -> dict[str, Any] | int:
        r = httpx.get(gw.url + url_path, headers={"Host": host}, timeout=5)
        return r.json() if r.status_code == 200 else r.status_code

    wait_until(lambda: isinstance(seen("shop.test"), dict) and isinstance(seen("web.test"), dict), timeout=20,
               what="the Route and the Ingress served with Middleware objects")
    shop, web = seen("shop.test", "/api/items"), seen("web.test")
    assert shop["path"] == "/items" and shop["headers"]["x-from"] == ["middleware-crd"]
    assert web["headers"]["x-from"] == ["middleware-crd"]
    assert seen("limited.test") == 404                    # its middleware is invalid: the Route is left out
    bad = wait_until(lambda: (api.get("Middleware", "bad", "default") or {}).get("status"), what="bad's status")
    assert bad["valid"] is False and "spec.rate" in " ".join(bad["errors"]), bad
    typeless = wait_until(lambda: (api.get("Middleware", "typeless", "default") or {}).get("status"),
                          what="typeless's status")
    assert typeless["valid"] is False and "'type'" in typeless["errors"][0]
    assert wait_until(lambda: (api.get("Middleware", "tag", "default") or {}).get("status"),
                      what="tag's status") == {"valid": True, "errors": []}
    mws = {m["name"]: m for m in httpx.get(gw.admin + "/api/middlewares", timeout=5).json()}
    assert {"default-strip@crd", "default-tag@crd"} <= set(mws) and "default-bad@crd" not in mws

    api.apply(middleware("tag", {"type": "headers", "request_headers": ["not", "a", "table"]}))
    tag = wait_until(lambda: ((api.get("Middleware", "tag", "default") or {}).get("status") or {}).get("valid")
                     is False and api.get("Middleware", "tag", "default")["status"], what="tag's invalid status")
    assert "spec.request_headers" in " ".join(tag["errors"]) and "last good version" in " ".join(tag["errors"])
    assert seen("web.test")["headers"]["x-from"] == ["middleware-crd"]     # the last good version still serves
    assert seen("shop.test", "/api/items")["headers"]["x-from"] == ["middleware-crd"]
    log = gw.log_path.read_text()
    assert "Middleware default/tag" in log and "spec.request_headers" in log

    api.apply(middleware("tag", {"type": "headers", "request_headers": {"X-From": "fixed"}}))
    wait_until(lambda: seen("web.test")["headers"]["x-from"] == ["fixed"], timeout=20, what="the fixed one served")
