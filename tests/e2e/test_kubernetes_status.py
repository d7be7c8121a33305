"""Ingress status written back through the real binary: only by the replica holding the Lease, once per change,
and taken over by the other replica when the leader stops."""

from __future__ import annotations

from collections.abc import Iterator

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


def writes_for(api: FakeApiServer, name: str) -> list[dict]:
    return [w for w in api.status_writes if w["kind"] == "Ingress" and w["name"] == name]


def test_status_is_written_once_per_change_by_the_leader_only(api, backends, gateway, tmp_path):
    b = backends("app")
    api.apply(ingress_class(), service("app"), slice_for("app", [b.port]),
              ingress("one", [rule("one.test", path("/", "app"))]))
    first, second = gateway(config(api, tmp_path)), gateway(config(api, tmp_path))
    for gw in (first, second):
        wait_until(lambda gw=gw: httpx.get(gw.url, headers={"Host": "one.test"}).status_code == 200, timeout=15,
                   what="both replicas serve")
    wait_until(lambda: writes_for(api, "one"), timeout=15, what="status written")
    leaders = wait_until(lambda: [g for g in (first, second) if kube_state(g)["leader"]], what="a leader")
    assert len(leaders) == 1
    assert api.get("Ingress", "one", "default")["status"] == {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}
    api.apply(ingress("two", [rule("two.test", path("/", "app"))]))
    wait_until(lambda: writes_for(api, "two"), timeout=15, what="second ingress's status")
    # several lease renewals later, nothing was written again: the status did not change
    lease = api.get("Lease", "a3s-gateway", "default")
    wait_until(lambda: api.get("Lease", "a3s-gateway", "default")["metadata"]["resourceVersion"]
               != lease["metadata"]["resourceVersion"], what="lease renewed")
    assert len(writes_for(api, "one")) == 1 and len(writes_for(api, "two")) == 1
    assert {w["content_type"] for w in api.status_writes} == {"application/merge-patch+json"}
    # the leader stops: it hands the Lease back, the other replica takes over
    leader = leaders[0]
    follower = second if leader is first else first
    holder = lease["spec"]["holderIdentity"]
    leader.stop()
    wait_until(lambda: kube_state(follower)["leader"], timeout=15, what="follower took over")
    assert api.get("Lease", "a3s-gateway", "default")["spec"]["holderIdentity"] != holder


def kubernetes_provider(gw) -> dict:
    return next(p for p in httpx.get(gw.admin + "/api/providers", timeout=5).json() if p["name"] == "kubernetes")


def test_api_providers_shows_each_watch_and_which_replica_is_the_leader(api, backends, gateway, tmp_path):
    b = backends("app")
    api.apply(ingress_class(), service("app"), slice_for("app", [b.port]),
              ingress("one", [rule("one.test", path("/", "app"))]),
              ingress("orphan", [rule("orphan.test", path("/", "missing"))]))
    first, second = gateway(config(api, tmp_path)), gateway(config(api, tmp_path))
    for gw in (first, second):
        wait_until(lambda gw=gw: httpx.get(gw.url, headers={"Host": "one.test"}).status_code == 200, timeout=15,
                   what="both replicas serve")
    views = wait_until(lambda: (lambda v: v if sorted(p["leader"] for p in v) == [False, True] else None)(
        [kubernetes_provider(g) for g in (first, second)]), what="one leader, one follower")
    for view in views:
        assert view["connected"] is True and view["last_sync"] > 0 and view["last_error"] is None
        assert view["objects"] == 2                 # the router and the service of Ingress one
        assert "service default/missing not found" in " ".join(view["errors"]["Ingress default/orphan"])
        watches = {w["kind"]: w for w in view["watches"]}
        assert set(watches) == {"Ingress", "IngressClass", "Service", "EndpointSlice", "Secret"}
        ingresses = watches["Ingress"]
        assert ingresses["objects"] == 2 and ingresses["namespaces"] == ["*"] and ingresses["last_relist"] > 0
        assert ingresses["last_error"] is None
    api.apply(ingress("two", [rule("two.test", path("/", "app"))]))
    last = wait_until(lambda: (kubernetes_provider(first)["watches"][0]["last_event"] or {}).get("object")
                      == "default/two" and kubernetes_provider(first)["watches"][0]["last_event"], what="last event")
    assert last["type"] == "ADDED" and last["at"] > 0
    metrics = httpx.get(first.admin + "/api/gateway/metrics", timeout=5).text
    assert 'a3s_gateway_provider_connected{provider="kubernetes"} 1.0' in metrics
    assert 'a3s_gateway_provider_rejected_updates_total{provider="kubernetes"}' in metrics
