"""The Gateway API through the real binary: the fake API server, loopback backends ``v1``..``v3`` standing in for
pods, a Gateway whose HTTP listener is the ``web`` entrypoint's port.

Covers the upstream conformance HTTPRoute cases restated in ``gateway_conformance.py`` (matching, precedence
across routes, header/query/method matches, filters, bad backend refs answering 500), listener hostnames,
weighted backends within ±5 % over 500 requests, ReferenceGrant, allowedRoutes, HTTPS listeners with
certificateRefs, and the status written back (once per change, by the leader).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from certs import CA
from gateway_conformance import CASES, header_mod
from gateway_support import (
    backend_ref,
    conditions,
    gateway_class,
    http_route,
    listener,
    parent_conditions,
    prefix,
    reference_grant,
    route_rule,
)
from gateway_support import gateway as gateway_obj
from harness import Gateway, free_port, wait_until
from kube_apiserver import FakeApiServer
from kube_support import config, kube_state, service, slice_for, tls_entrypoint, tls_secret

GATEWAY_API = "gateway_api = true"


@pytest.fixture
def pki(tmp_path) -> CA:
    return CA(tmp_path / "pki")


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


def start(api: FakeApiServer, backends: Any, gateway_: Any, tmp_path: Any, *objects: dict[str, Any],
          listeners: list[dict[str, Any]] | None = None, tls: str = "", web: int | None = None) -> Gateway:
    """Backends v1..v3, our GatewayClass, the ``same-namespace`` Gateway, ``objects``, and the gateway binary."""
    web = web or free_port()
    for name in ("v1", "v2", "v3"):
        b = backends(name)
        api.apply(service(name), slice_for(name, [b.port]))
    api.apply(gateway_class(), gateway_obj("same-namespace", listeners or [listener("http", web)]), *objects)
    return gateway_(config(api, tmp_path, provider=GATEWAY_API, tls=tls), web=web)


def ask(gw: Gateway, check: dict[str, Any]) -> httpx.Response:
    return httpx.request(check.get("method", "GET"), gw.url + check.get("path", "/"),
                         headers={"Host": check.get("host", "a.test"), **check.get("headers", {})}, timeout=5)


def verdict(gw: Gateway, check: dict[str, Any]) -> dict[str, Any]:
    """What the request got, in the shape of the check (only the keys the check has)."""
    r = ask(gw, check)
    body = r.json() if r.status_code == 200 and r.headers.get("content-type", "").startswith("application/json") \
        else {}
    seen = {k: ",".join(v) for k, v in (body.get("headers") or {}).items()}
    got: dict[str, Any] = {k: v for k, v in check.items() if k in ("path", "host", "headers", "method")}
    if "backend" in check:
        got["backend"] = body.get("name", r.status_code)
    if "status" in check:
        got["status"] = r.status_code
    if "backend_path" in check:
        got["backend_path"] = body.get("path")
    if "seen" in check:
        got["seen"] = {k: seen.get(k.lower()) for k in check["seen"]}
    if "absent" in check:
        got["absent"] = [k for k in check["absent"] if k.lower() not in seen]
    if "response" in check:
        got["response"] = {k: r.headers.get(k) for k in check["response"]}
    if "location" in check:
        got["location"] = r.headers.get("location")
    return got


def expected(check: dict[str, Any]) -> dict[str, Any]:
    out = dict(check)
    if "location" in out:
        out["location"] = out["location"].format(host=check.get("host", "a.test"))
    return out


@pytest.mark.parametrize(("name", "routes", "checks"), CASES, ids=[c[0].split(" ")[0] for c in CASES])
def test_conformance_httproute_case(name, routes, checks, api, backends, gateway, tmp_path):
    gw = start(api, backends, gateway, tmp_path, *routes)
    wait_until(lambda: verdict(gw, checks[0]) == expected(checks[0]), timeout=20, what=f"{name} served")
    assert [verdict(gw, c) for c in checks] == [expected(c) for c in checks]


def test_request_mirror_copies_all_or_a_percent_or_a_fraction_to_the_mirror(api, backends, gateway, tmp_path):
    # upstream HTTPRouteRequestMirror, HTTPRouteRequestPercentageMirror and HTTPRouteRequestMultipleMirrors: v1
    # answers, the mirror gets a copy of every request, of `percent` % or of `fraction` of them (the mirroring
    # service's counter is exact); two mirrors each get a copy, after the rule's header modifier
    started: dict[str, Any] = {}

    def tracked(name: str) -> Any:
        started[name] = backends(name)
        return started[name]

    def mirror(svc: str, **share: Any) -> dict[str, Any]:
        return {"type": "RequestMirror", "requestMirror": {"backendRef": backend_ref(svc), **share}}

    gw = start(api, tracked, gateway, tmp_path, http_route("mirror", [
        route_rule([prefix("/all")], "v1", filters=[mirror("v2")]),
        route_rule([prefix("/percent")], "v1", filters=[mirror("v3", percent=20)]),
        route_rule([prefix("/fraction")], "v1", filters=[mirror("v3", fraction={"numerator": 1, "denominator": 2})]),
        route_rule([prefix("/nowhere")], "v1", filters=[mirror("missing")]),
        route_rule([prefix("/multi-mirror")], "v1", filters=[mirror("v2"), mirror("v3")]),
        route_rule([prefix("/multi-mirror-and-modify-request-headers")], "v1", filters=[
            header_mod("RequestHeaderModifier", set_={"X-Header-Set": "set-overwrites-values"},
                       add={"X-Header-Add": "header-val-1", "X-Header-Add-Append": "header-val-2"},
                       remove=["X-Header-Remove"]), mirror("v2"), mirror("v3")])]))
    seen = lambda name: httpx.get(started[name].url + "/stats", timeout=5).json()["requests"]  # noqa: E731
    wait_until(lambda: verdict(gw, {"path": "/nowhere", "backend": "v1"})["backend"] == "v1", timeout=20,
               what="mirrored route served")
    for path, count in (("/all", 5), ("/percent", 50), ("/fraction", 20)):
        assert {verdict(gw, {"path": path, "backend": "v1"})["backend"] for _ in range(count)} == {"v1"}
    assert verdict(gw, {"path": "/multi-mirror", "backend": "v1", "backend_path": "/multi-mirror"}) == {
        "path": "/multi-mirror", "backend": "v1", "backend_path": "/multi-mirror"}
    modified = {"path": "/multi-mirror-and-modify-request-headers", "backend": "v1",
                "headers": {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"},
                "seen": {"X-Header-Add": "header-val-1", "X-Header-Add-Append": "append-val-1,header-val-2",
                         "X-Header-Set": "set-overwrites-values"}, "absent": ["X-Header-Remove"]}
    assert verdict(gw, modified) == modified
    wait_until(lambda: seen("v2") == 5 + 2 and seen("v3") == 20 + 2,
               what="mirror copies: 5 + 2 to v2, 10 + 10 + 2 to v3")
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "mirror", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}, what="route status")


def test_listener_hostnames_select_the_routes(api, backends, gateway, tmp_path):
    web = free_port()
    section = lambda s: [{"name": "hosts", "namespace": "default", "sectionName": s}]  # noqa: E731
    listeners = [listener("l1", web, hostname="bar.com"), listener("l2", web, hostname="foo.bar.com"),
                 listener("l3", web, hostname="*.bar.com"), listener("l4", web, hostname="*.foo.com")]
    api.apply(gateway_class(), gateway_obj("hosts", listeners))
    gw = start(api, backends, gateway, tmp_path,
               http_route("backend-v1", [route_rule(None, "v1")], parents=section("l1")),
               http_route("backend-v2", [route_rule(None, "v2")], parents=section("l2")),
               http_route("backend-v3", [route_rule(None, "v3")], parents=section("l3") + section("l4")), web=web)
    checks = [{"host": h, "backend": b} for h, b in (
        ("bar.com", "v1"), ("foo.bar.com", "v2"), ("baz.bar.com", "v3"), ("boo.bar.com", "v3"),
        ("multiple.prefixes.bar.com", "v3"), ("multiple.prefixes.foo.com", "v3"), ("foo.com", 404),
        ("no.matching.host", 404))]
    wait_until(lambda: verdict(gw, checks[0]) == checks[0], timeout=20, what="listener hostnames served")
    assert [verdict(gw, c) for c in checks] == checks


def test_weighted_backends_split_within_5_percent(api, backends, gateway, tmp_path):
    gw = start(api, backends, gateway, tmp_path, http_route("weighted", [route_rule(
        None, backend_ref("v1", 70), backend_ref("v2", 30), backend_ref("v3", 0))]))
    wait_until(lambda: ask(gw, {}).status_code == 200, timeout=20, what="weighted route served")
    counts = {"v1": 0, "v2": 0, "v3": 0}
    with httpx.Client(headers={"Host": "a.test"}, timeout=5) as client:
        for _ in range(500):
            counts[client.get(gw.url + "/").json()["name"]] += 1
    assert abs(counts["v1"] - 350) <= 25 and abs(counts["v2"] - 150) <= 25 and counts["v3"] == 0, counts


def test_cross_namespace_refs_need_a_reference_grant_and_a_bad_ref_keeps_the_route_accepted(
        api, backends, gateway, tmp_path):
    web = free_port()
    route = http_route("cross", [route_rule(None, backend_ref("v1", namespace="default"))], namespace="web",
                       parents=[{"name": "same-namespace", "namespace": "default"}])
    gw = start(api, backends, gateway, tmp_path, route, listeners=[listener("http", web, allowed="All")], web=web)
    wait_until(lambda: ask(gw, {}).status_code == 500, timeout=20, what="ungranted ref answers 500")
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "cross", "web")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "RefNotPermitted")}, what="route status")
    api.apply(reference_grant("from-web", "default", "HTTPRoute", "web", "Service"))
    wait_until(lambda: verdict(gw, {"backend": "v1"}) == {"backend": "v1"}, timeout=20, what="granted ref served")
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "cross", "web"))["ResolvedRefs"]
               == ("True", "ResolvedRefs"), what="route status resolved")


def test_allowed_routes_same_namespace_refuses_other_namespaces(api, backends, gateway, tmp_path):
    gw = start(api, backends, gateway, tmp_path,
               http_route("home", [route_rule(None, "v1")], hostnames=["home.test"]),
               http_route("away", [route_rule(None, "v2")], hostnames=["away.test"], namespace="other"))
    wait_until(lambda: verdict(gw, {"host": "home.test", "backend": "v1"}) == {"host": "home.test",
                                                                              "backend": "v1"},
               timeout=20, what="same-namespace route served")
    assert ask(gw, {"host": "away.test"}).status_code == 404
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "away", "other")).get("Accepted")
               == ("False", "NotAllowedByListeners"), what="refused route's status")


def test_status_of_class_gateway_and_routes_is_written_once_per_change(api, backends, gateway, tmp_path):
    web = free_port()
    theirs = {"parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other", "conditions": []}
    ok_route = {**http_route("ok", [route_rule(None, "v1")]), "status": {"parents": [theirs]}}
    gw = start(api, backends, gateway, tmp_path, ok_route,
               http_route("wrong-section", [route_rule(None, "v1")],
                          parents=[{"name": "same-namespace", "namespace": "default", "sectionName": "nope"}]),
               listeners=[listener("http", web), listener("other-port", web + 1)], web=web)
    # one pass writes the objects one after another: wait for the last of them, then check them all
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "ok", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
        and conditions(api.get("GatewayClass", "a3s")) == {"Accepted": ("True", "Accepted")}
        and conditions(api.get("Gateway", "same-namespace", "default")) == {
            "Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
        and "Accepted" in parent_conditions(api.get("HTTPRoute", "wrong-section", "default")),
        timeout=20, what="status of the class, the gateway and both routes")
    assert api.get("HTTPRoute", "ok", "default")["status"]["parents"][0] == theirs    # another controller's: kept
    gw_obj = api.get("Gateway", "same-namespace", "default")
    by_listener = {li["name"]: li for li in gw_obj["status"]["listeners"]}
    assert by_listener["http"]["attachedRoutes"] == 1
    assert {c["type"]: c["reason"] for c in by_listener["other-port"]["conditions"]}["Accepted"] == "PortUnavailable"
    assert parent_conditions(api.get("HTTPRoute", "wrong-section", "default"))["Accepted"] == (
        "False", "NoMatchingParent")
    lease = api.get("Lease", "a3s-gateway", "default")["metadata"]["resourceVersion"]
    wait_until(lambda: api.get("Lease", "a3s-gateway", "default")["metadata"]["resourceVersion"] != lease,
               what="lease renewed")     # a renewal starts a pass: the one that wrote everything has ended
    writes = len(api.status_writes)
    lease = api.get("Lease", "a3s-gateway", "default")["metadata"]["resourceVersion"]
    wait_until(lambda: api.get("Lease", "a3s-gateway", "default")["metadata"]["resourceVersion"] != lease,
               what="lease renewed")
    assert len(api.status_writes) == writes           # nothing changed: nothing written again
    assert kube_state(gw)["leader"] is True
    routers = {r["name"]: r["provider"] for r in httpx.get(gw.admin + "/api/routers", timeout=5).json()}
    assert routers["default-ok-0-0-any@gateway"] == "gateway"
    assert {w["kind"] for w in api.status_writes} == {"GatewayClass", "Gateway", "HTTPRoute"}


def test_https_listener_serves_the_certificate_refs(api, backends, gateway, tmp_path, pki):
    default, shop = pki.issue("default.test"), pki.issue("shop.test", file="shop")
    tls_port = free_port()
    tls = tls_entrypoint("websecure", tls_port, default)
    gw = start(api, backends, gateway, tmp_path, tls_secret("shop-tls", shop.cert, shop.key),
               http_route("shop", [route_rule(None, "v1")], hostnames=["shop.test"]),
               listeners=[listener("https", tls_port, "HTTPS", certs=[{"name": "shop-tls"}])], tls=tls)
    context = ssl.create_default_context(cafile=str(pki.path))

    def answer() -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", tls_port), timeout=3) as raw, \
                    context.wrap_socket(raw, server_hostname="shop.test") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
                return b"".join(iter(lambda: s.recv(65536), b""))
        except (OSError, ssl.SSLError):
            return b""

    wait_until(lambda: answer().startswith(b"HTTP/1.1 200"), timeout=20, what="HTTPS listener with the Secret")
    assert b'"v1"' in answer()
    assert ask(gw, {"host": "shop.test"}).status_code == 404    # the plain entrypoint has no listener


def test_partially_invalid_via_a_reference_grant_naming_another_service(api, backends, gateway, tmp_path):
    # upstream HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: the grant names app-v1 only, so the /v2 rule
    # (app-v2) answers 500 and says RefNotPermitted, while the other rule serves
    for name in ("app-v1", "app-v2"):
        b = backends(name)
        api.apply(service(name, namespace="app"), slice_for(name, [b.port], namespace="app"))
    grant = reference_grant("only-v1", "app", "HTTPRoute", "default", "Service")
    grant["spec"]["to"][0]["name"] = "app-v1"
    gw = start(api, backends, gateway, tmp_path, grant, http_route("partial", [
        route_rule([{"path": {"type": "PathPrefix", "value": "/v2"}}], backend_ref("app-v2", namespace="app")),
        route_rule(None, backend_ref("app-v1", namespace="app"))]))
    wait_until(lambda: verdict(gw, {"backend": "app-v1"}) == {"backend": "app-v1"}, timeout=20, what="granted rule")
    assert ask(gw, {"path": "/v2"}).status_code == 500
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "partial", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "RefNotPermitted")}, what="route status")


def test_a_backend_without_ready_endpoints_answers_503_and_still_resolves(api, backends, gateway, tmp_path):
    idle = free_port()
    api.apply(service("idle"), slice_for("idle", [idle], terminating=(idle,)))
    gw = start(api, backends, gateway, tmp_path, http_route("idle", [route_rule(None, "idle")]))
    wait_until(lambda: ask(gw, {}).status_code == 503, timeout=20, what="no ready endpoint answers 503")
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "idle", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}, what="route status")
    api.apply(slice_for("idle", [backends("v4").port], name=f"idle-{idle}"))     # the pod becomes ready
    wait_until(lambda: verdict(gw, {"backend": "v4"}) == {"backend": "v4"}, timeout=20, what="ready endpoint served")


def test_conformance_hostname_intersection_of_routes_and_listeners(api, backends, gateway, tmp_path):
    # upstream HTTPRouteHostnameIntersection: a route attaches to the listeners whose hostname intersects its
    # hostnames and serves only the intersection; the port in a Host header is not matched; a route that
    # intersects no listener is not Accepted (NoMatchingListenerHostname) and is not counted in attachedRoutes
    web = free_port()
    listeners = [listener("listener-1", web, hostname="very.specific.com"),
                 listener("listener-2", web, hostname="*.wildcard.io"),
                 listener("listener-3", web, hostname="*.anotherwildcard.io")]
    parents = [{"name": "httproute-hostname-intersection", "namespace": "default"}]
    routes = [http_route(name, [route_rule([prefix(path_)], backend)], hostnames=hosts, parents=parents)
              for name, hosts, path_, backend in (
                  ("specific-host-matches-listener-specific-host",
                   ["non.matching.com", "*.nonmatchingwildcard.io", "very.specific.com"], "/s1", "v1"),
                  ("specific-host-matches-listener-wildcard-host",
                   ["non.matching.com", "wildcard.io", "foo.wildcard.io", "bar.wildcard.io", "foo.bar.wildcard.io"],
                   "/s2", "v2"),
                  ("wildcard-host-matches-listener-specific-host", ["non.matching.com", "*.specific.com"], "/s3", "v3"),
                  ("wildcard-host-matches-listener-wildcard-host", ["*.anotherwildcard.io"], "/s4", "v1"),
                  ("no-intersecting-hosts", ["specific.but.wrong.com", "wildcard.io"], "/s5", "v2"))]
    all_hosts = http_route("httproute-hostname-intersection-all", [route_rule(None, "v2")],
                           hostnames=["first.com", "sub.first.com", "second.com", "sub.second.com"],
                           parents=[{"name": "httproute-hostname-intersection-all", "namespace": "default"}])
    api.apply(gateway_class(), gateway_obj("httproute-hostname-intersection", listeners),
              gateway_obj("httproute-hostname-intersection-all", [listener("listener-1", web)]))
    gw = start(api, backends, gateway, tmp_path, *routes, all_hosts, web=web)
    checks = [{"host": h, "path": p, "backend": b} for h, p, b in (
        ("very.specific.com", "/s1", "v1"), ("very.specific.com:1234", "/s1", "v1"), ("non.matching.com", "/s1", 404),
        ("foo.nonmatchingwildcard.io", "/s1", 404), ("foo.wildcard.io", "/s1", 404),
        ("very.specific.com", "/non-matching-prefix", 404),
        ("foo.wildcard.io", "/s2", "v2"), ("bar.wildcard.io", "/s2", "v2"), ("foo.bar.wildcard.io", "/s2", "v2"),
        ("non.matching.com", "/s2", 404), ("wildcard.io", "/s2", 404), ("very.specific.com", "/s2", 404),
        ("foo.wildcard.io", "/non-matching-prefix", 404),
        ("very.specific.com", "/s3", "v3"), ("non.matching.com", "/s3", 404), ("foo.specific.com", "/s3", 404),
        ("foo.wildcard.io", "/s3", 404), ("very.specific.com", "/non-matching-prefix", 404),
        ("foo.anotherwildcard.io", "/s4", "v1"), ("bar.anotherwildcard.io", "/s4", "v1"),
        ("foo.bar.anotherwildcard.io", "/s4", "v1"), ("anotherwildcard.io", "/s4", 404),
        ("foo.wildcard.io", "/s4", 404), ("very.specific.com", "/s4", 404),
        ("foo.anotherwildcard.io", "/non-matching-prefix", 404),
        ("specific.but.wrong.com", "/s5", 404), ("wildcard.io", "/s5", 404),
        ("first.com", "/", "v2"), ("sub.first.com", "/", "v2"), ("second.com", "/", "v2"),
        ("sub.second.com", "/", "v2"), ("third.com", "/", 404), ("sub.third.com", "/", 404))]
    wait_until(lambda: verdict(gw, checks[-5]) == checks[-5] and verdict(gw, checks[0]) == checks[0], timeout=20,
               what="hostname intersections served")
    assert [verdict(gw, c) for c in checks] == checks
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "no-intersecting-hosts", "default")).get("Accepted")
               == ("False", "NoMatchingListenerHostname"), what="the non-intersecting route's status")
    attached = {li["name"]: li["attachedRoutes"]
                for li in api.get("Gateway", "httproute-hostname-intersection", "default")["status"]["listeners"]}
    assert attached == {"listener-1": 2, "listener-2": 1, "listener-3": 1}


def test_conformance_invalid_parent_and_backend_refs_are_reported_per_route(api, backends, gateway, tmp_path):
    # upstream HTTPRouteInvalidReferenceGrant (no grant covers the Service: 500, RefNotPermitted),
    # HTTPRouteInvalidParentRefNotMatchingListenerPort and ...NotMatchingSectionName (NoMatchingParent, nothing
    # attached), HTTPRouteInvalidCrossNamespaceParentRef (NotAllowedByListeners)
    b = backends("web-backend")
    api.apply(service("web-backend", namespace="web-ns"), slice_for("web-backend", [b.port], namespace="web-ns"))
    wrong = [reference_grant("wrong-namespace", "default", "HTTPRoute", "default", "Service")]
    for name, change in (("wrong-from-group", ("from", "group", "not-the-group")),
                         ("wrong-from-kind", ("from", "kind", "Gateway")),
                         ("wrong-from-namespace", ("from", "namespace", "elsewhere")),
                         ("wrong-to-group", ("to", "group", "not-the-group")),
                         ("wrong-to-kind", ("to", "kind", "Secret"))):
        grant = reference_grant(name, "web-ns", "HTTPRoute", "default", "Service")
        grant["spec"][change[0]][0][change[1]] = change[2]
        wrong.append(grant)
    grant = reference_grant("wrong-to-name", "web-ns", "HTTPRoute", "default", "Service")
    grant["spec"]["to"][0]["name"] = "not-the-service"
    wrong.append(grant)
    same = {"name": "same-namespace", "namespace": "default"}
    gw = start(api, backends, gateway, tmp_path, *wrong,
               http_route("reference-grant", [route_rule(None, backend_ref("web-backend", namespace="web-ns"))],
                          hostnames=["grant.test"]),
               http_route("not-matching-port", [route_rule(None, "v1")], hostnames=["port.test"],
                          parents=[{**same, "port": 81}]),
               http_route("not-matching-section", [route_rule(None, "v1")], hostnames=["section.test"],
                          parents=[{**same, "sectionName": "nope"}]),
               http_route("cross-namespace-parent", [route_rule(None, "v1")], hostnames=["cross.test"],
                          namespace="gateway-conformance-web-backend", parents=[same]))
    wait_until(lambda: ask(gw, {"host": "grant.test"}).status_code == 500, timeout=20,
               what="the ungranted backend answers 500")
    statuses = {name: ("Accepted", "False", reason) for name, reason in (
        ("not-matching-port", "NoMatchingParent"), ("not-matching-section", "NoMatchingParent"))}
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "reference-grant", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "RefNotPermitted")}, what="RefNotPermitted")
    # one pass writes the routes one after another: wait for each
    for name, (kind, status, reason) in statuses.items():
        wanted = {kind: (status, reason), "ResolvedRefs": ("True", "ResolvedRefs")}
        wait_until(lambda name=name, wanted=wanted: parent_conditions(api.get("HTTPRoute", name, "default")) == wanted,
                   what=f"{name}'s status")
    wait_until(lambda: parent_conditions(api.get("HTTPRoute", "cross-namespace-parent",
                                                 "gateway-conformance-web-backend")).get("Accepted")
               == ("False", "NotAllowedByListeners"), what="cross-namespace-parent's status")
    assert [ask(gw, {"host": h}).status_code for h in ("port.test", "section.test", "cross.test")] == [404] * 3
    wait_until(lambda: [li["attachedRoutes"] for li in api.get("Gateway", "same-namespace", "default")["status"][
        "listeners"]] == [1], what="one attached route")     # only the reference-grant route


def test_conformance_observed_generation_follows_a_route_update(api, backends, gateway, tmp_path):
    # upstream HTTPRouteObservedGenerationBump: after a spec change (a new generation) the route's conditions
    # carry the new observedGeneration, stay Accepted and ResolvedRefs, and the new backend serves
    route = http_route("observed-generation-bump", [route_rule(None, "v1")])
    gw = start(api, backends, gateway, tmp_path, route)

    def observed() -> set[int]:
        parents = ((api.get("HTTPRoute", "observed-generation-bump", "default") or {}).get("status") or {}).get(
            "parents") or []
        return {c.get("observedGeneration") for p in parents for c in p["conditions"]}

    wait_until(lambda: observed() == {1}, timeout=20, what="conditions of generation 1")
    api.apply(http_route("observed-generation-bump", [route_rule(None, "v2")]))
    assert api.get("HTTPRoute", "observed-generation-bump", "default")["metadata"]["generation"] == 2
    wait_until(lambda: observed() == {2}, timeout=20, what="conditions of generation 2")
    assert parent_conditions(api.get("HTTPRoute", "observed-generation-bump", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    wait_until(lambda: verdict(gw, {"backend": "v2"}) == {"backend": "v2"}, what="the new backend serves")
