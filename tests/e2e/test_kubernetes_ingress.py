"""The Kubernetes provider through the real binary: a fake API server (``kube_apiserver.py``) that lightkube talks
to as to a cluster, loopback backends standing in for pods, 2 workers.

Covers Ingress v1 (pathType and precedence, wildcard hosts, defaultBackend, ports by name, ExternalName,
annotations), IngressClass filtering with the default class, TLS from Secrets and their rotation,
EndpointSlice changes, the watch's 410 relist, bursts and no-op updates, and a bad object left out alone.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import httpx
import pytest
from certs import CA, serial_of
from cryptography import x509
from harness import Gateway, free_port, wait_until
from kube_apiserver import FakeApiServer
from kube_support import (
    config,
    ingress,
    ingress_class,
    kube_state,
    path,
    rule,
    service,
    slice_for,
    tls_entrypoint,
    tls_secret,
)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


def name_at(gw: Gateway, url_path: str, host: str = "a.test") -> str | int:
    """The backend that answered, or the status when the gateway answered itself."""
    r = httpx.get(gw.url + url_path, headers={"Host": host}, timeout=5)
    return r.json()["name"] if r.status_code == 200 else r.status_code


def pods(api: FakeApiServer, backends, *names: str) -> dict[str, object]:
    """One Service + EndpointSlice per name, each backed by its own loopback backend."""
    out = {}
    for name in names:
        b = backends(name)
        api.apply(service(name), slice_for(name, [b.port]))
        out[name] = b
    return out


def rebuilds(gw: Gateway) -> int:
    return kube_state(gw).get("rebuilds", 0)


PRECEDENCE = [
    # (request path, expected backend): Exact beats Prefix on a tie, the longest path wins, Prefix is
    # element-wise (/foo never matches /foobar), a trailing slash on a Prefix is ignored
    ("/foo", "exact-foo"),
    ("/foo/", "prefix-foo"),
    ("/foo/x", "prefix-foo"),
    ("/foobar", "root"),
    ("/foo/bar", "prefix-foo-bar"),
    ("/foo/bar/baz", "prefix-foo-bar"),
    ("/foo/barbaz", "prefix-foo"),
    ("/exact/", "exact-foo"),
    ("/exact", "root"),
    ("/exact/x", "root"),
]


def test_ingress_path_types_follow_the_precedence_table(api, backends, gateway, tmp_path):
    pods(api, backends, "exact-foo", "prefix-foo", "prefix-foo-bar", "root")
    api.apply(ingress_class(), ingress("table", [rule(
        "a.test",
        path("/foo", "prefix-foo"), path("/foo", "exact-foo", "Exact"), path("/foo/bar/", "prefix-foo-bar"),
        path("/", "root", "ImplementationSpecific"), path("/exact/", "exact-foo", "Exact"))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/foo") == "exact-foo", timeout=15, what="ingress served")
    assert [(p, name_at(gw, p)) for p, _ in PRECEDENCE] == PRECEDENCE
    assert name_at(gw, "/foo", host="other.test") == 404          # the rules are for host a.test only


def test_wildcard_host_matches_exactly_one_label_and_exact_host_wins(api, backends, gateway, tmp_path):
    pods(api, backends, "wild", "exact")
    api.apply(ingress_class(), ingress("hosts", [rule("*.foo.test", path("/", "wild")),
                                                 rule("www.foo.test", path("/", "exact"))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/", "bar.foo.test") == "wild", timeout=15, what="wildcard served")
    assert name_at(gw, "/", "www.foo.test") == "exact"
    assert name_at(gw, "/", "a.bar.foo.test") == 404
    assert name_at(gw, "/", "foo.test") == 404


def test_default_backend_takes_what_no_rule_matches(api, backends, gateway, tmp_path):
    pods(api, backends, "site", "fallback")
    api.apply(ingress_class(), ingress("site", [rule("a.test", path("/app", "site"))],
                                       default_backend={"service": {"name": "fallback", "port": {"name": "http"}}}))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/app/x") == "site", timeout=15, what="ingress served")
    assert name_at(gw, "/other") == "fallback"
    assert name_at(gw, "/", "any.test") == "fallback"


def test_only_our_classes_are_served_and_the_default_class_takes_classless_ingresses(api, backends, gateway,
                                                                                       tmp_path):
    pods(api, backends, "mine", "theirs", "classless", "legacy")
    api.apply(ingress_class("a3s"), ingress_class("nginx", controller="k8s.io/ingress-nginx"),
              ingress("mine", [rule("mine.test", path("/", "mine"))]),
              ingress("theirs", [rule("theirs.test", path("/", "theirs"))], cls="nginx"),
              ingress("classless", [rule("classless.test", path("/", "classless"))], cls=None),
              ingress("legacy", [rule("legacy.test", path("/", "legacy"))], cls=None,
                      annotations={"kubernetes.io/ingress.class": "a3s-gateway"}))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/", "mine.test") == "mine", timeout=15, what="our ingress served")
    assert name_at(gw, "/", "legacy.test") == "legacy"
    assert name_at(gw, "/", "theirs.test") == 404
    assert name_at(gw, "/", "classless.test") == 404
    api.apply(ingress_class("a3s", default=True))
    wait_until(lambda: name_at(gw, "/", "classless.test") == "classless", timeout=15, what="default class")
    assert name_at(gw, "/", "theirs.test") == 404


def test_service_ports_by_name_and_externalname_services(api, backends, gateway, tmp_path):
    b = backends("named")
    ext = backends("external")
    api.apply(ingress_class(), service("named", port=8080, port_name="web"),
              slice_for("named", [b.port], port_name="web"),
              service("ext", port=ext.port, external="127.0.0.1"),
              ingress("ports", [rule("a.test", path("/named", "named", port="web"),
                                     path("/ext", "ext", port=ext.port))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/named") == "named", timeout=15, what="named port served")
    assert name_at(gw, "/ext") == "external"


def test_annotations_set_middlewares_and_priority(api, backends, gateway, tmp_path):
    pods(api, backends, "app", "low")
    extra = """
[middlewares.tag]
type = "headers"
request_headers = {X-Tagged = "yes"}
"""
    api.apply(ingress_class(),
              ingress("app", [rule("a.test", path("/", "app"))],
                      annotations={"a3s.io/router.middlewares": "tag"}),
              ingress("low", [rule("a.test", path("/x/y/z", "low"))], annotations={"a3s.io/router.priority": "1"}))
    gw = gateway(config(api, tmp_path, extra=extra))
    wait_until(lambda: name_at(gw, "/") == "app", timeout=15, what="ingress served")
    r = httpx.get(gw.url + "/x/y/z", headers={"Host": "a.test"})
    assert r.json()["name"] == "app"                       # priority 1 loses to the shorter path
    assert r.json()["headers"]["x-tagged"] == ["yes"]


def events_about(api: FakeApiServer, name: str) -> list[dict]:
    """The Events the gateway created about the object ``name``."""
    return [o for (plural, _ns, _name), o in list(api.objects.items())
            if plural == "events" and o["regarding"]["name"] == name]


def test_a_bad_ingress_is_reported_by_namespace_and_name_and_the_rest_keeps_serving(api, backends, gateway,
                                                                                      tmp_path):
    pods(api, backends, "good")
    api.apply(ingress_class(), ingress("good", [rule("a.test", path("/", "good"))]),
              ingress("bad", [rule("b.test", path("/", "good"))], namespace="default",
                      annotations={"a3s.io/router.middlewares": "no-such-middleware"}),
              ingress("orphan", [rule("c.test", path("/", "missing"))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/") == "good", timeout=15, what="good ingress served")
    errors = wait_until(lambda: kube_state(gw)["errors"], what="errors reported")
    assert "no-such-middleware" in " ".join(errors["Ingress default/bad"])
    assert "service default/missing not found" in " ".join(errors["Ingress default/orphan"])
    assert name_at(gw, "/", "b.test") == 404
    # each object with problems gets one Warning Event (kubectl describe shows it), the good one none
    event = wait_until(lambda: events_about(api, "bad"), what="an Event about the bad Ingress")[0]
    assert event["type"] == "Warning" and event["reason"] == "ConfigProblem" and "no-such-middleware" in event["note"]
    assert event["regarding"] == {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "namespace": "default",
                                  "name": "bad", "uid": api.get("Ingress", "bad", "default")["metadata"]["uid"]}
    assert event["metadata"]["namespace"] == "default"
    assert "service default/missing not found" in wait_until(lambda: events_about(api, "orphan"),
                                                             what="an Event about the orphan")[0]["note"]
    lease = api.get("Lease", "a3s-gateway", "default")["metadata"]["resourceVersion"]
    wait_until(lambda: api.get("Lease", "a3s-gateway", "default")["metadata"]["resourceVersion"] != lease,
               what="lease renewed (another status pass)")
    assert [len(events_about(api, n)) for n in ("bad", "orphan", "good")] == [1, 1, 0]    # once per change


@pytest.fixture
def pki(tmp_path) -> CA:
    return CA(tmp_path / "pki")


def served_serial(port: int, ca: CA, name: str) -> int:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls_sock:
        return serial_of(tls_sock.getpeercert(binary_form=True))


def test_tls_certificates_come_from_secrets_and_follow_their_rotation(api, backends, gateway, tmp_path, pki):
    pods(api, backends, "secure")
    default = pki.issue("default.test")
    first = pki.issue("shop.test", file="shop-1")
    second = pki.issue("shop.test", file="shop-2")
    secure = free_port()
    tls = tls_entrypoint("secure", secure, default)
    api.apply(ingress_class(), tls_secret("shop-tls", first.cert, first.key),
              ingress("shop", [rule("shop.test", path("/", "secure"))],
                      tls=[{"hosts": ["shop.test"], "secretName": "shop-tls"}]))
    gw = gateway(config(api, tmp_path, tls=tls))
    want_first = x509.load_pem_x509_certificate(first.cert.read_bytes()).serial_number
    wait_until(lambda: served_serial(secure, pki, "shop.test") == want_first, timeout=15, what="secret's cert")
    api.apply(tls_secret("shop-tls", second.cert, second.key))
    want_second = x509.load_pem_x509_certificate(second.cert.read_bytes()).serial_number
    wait_until(lambda: served_serial(secure, pki, "shop.test") == want_second, timeout=15, what="rotated cert")
    ctx = ssl.create_default_context(cafile=str(pki.path))
    with socket.create_connection(("127.0.0.1", secure), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="shop.test") as tls_sock:
        tls_sock.sendall(b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
        answer = b"".join(iter(lambda: tls_sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200") and b'"secure"' in answer
    assert gw.health()["last_reload"]["ok"]


def test_endpointslice_change_moves_traffic_to_the_new_pods_without_a_failed_request(api, backends, gateway,
                                                                                      tmp_path):
    old, new = backends("old-pod"), backends("new-pod")
    api.apply(ingress_class(), service("app"), slice_for("app", [old.port], name="app-1"),
              ingress("app", [rule("a.test", path("/", "app"))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/") == "old-pod", timeout=15, what="old pod served")
    seen: list[str | int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers={"Host": "a.test"}, timeout=5) as c:   # keep-alive across the swap
            while not stop.is_set() and len(seen) < 5000:
                r = c.get(gw.url + "/")
                seen.append(r.json()["name"] if r.status_code == 200 else r.status_code)

    t = threading.Thread(target=load)
    t.start()
    try:
        # the old pod terminates (drained: no new requests) while the new one becomes ready
        api.apply(slice_for("app", [old.port], name="app-1", terminating=(old.port,)),
                  slice_for("app", [new.port], name="app-2"))
        wait_until(lambda: seen[-20:] == ["new-pod"] * 20, timeout=15, what="traffic on the new pod")
    finally:
        stop.set()
        t.join(10)
    assert set(seen) == {"old-pod", "new-pod"}, sorted(set(map(str, seen)))


def test_compaction_mid_watch_relists_and_drops_an_ingress_deleted_during_the_gap(api, backends, gateway,
                                                                                   tmp_path):
    pods(api, backends, "keep", "gone")
    api.apply(ingress_class(), ingress("keep", [rule("keep.test", path("/", "keep"))]),
              ingress("gone", [rule("gone.test", path("/", "gone"))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/", "gone.test") == "gone", timeout=15, what="both served")
    wait_until(lambda: all(w["bookmarks"] > 0 for w in kube_state(gw)["watches"]), what="bookmarks")
    api.pause()                              # the gateway's watches see nothing from here
    api.delete("Ingress", "gone", "default")
    api.apply(ingress("added", [rule("added.test", path("/", "keep"))]))
    api.compact()                            # open watches end with 410; their versions are gone
    wait_until(lambda: name_at(gw, "/", "gone.test") == 404, timeout=15, what="deletion seen after relist")
    assert name_at(gw, "/", "added.test") == "keep"
    assert name_at(gw, "/", "keep.test") == "keep"
    ingresses = next(w for w in kube_state(gw)["watches"] if w["kind"] == "Ingress")
    assert ingresses["expired"] >= 1 and ingresses["relists"] >= 2 and ingresses["objects"] == 2


def test_a_burst_of_1000_events_costs_few_rebuilds_and_noop_updates_none(api, backends, gateway, tmp_path):
    pods(api, backends, "app")
    api.apply(ingress_class(), ingress("app", [rule("a.test", path("/", "app"))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/") == "app", timeout=15, what="ingress served")
    before = rebuilds(gw)
    # every event changes the config (the router's priority), the last one its path
    api.apply(*[ingress("app", [rule("a.test", path("/", "app"))], annotations={"a3s.io/router.priority": str(i)})
                for i in range(10, 1009)], ingress("app", [rule("a.test", path("/final", "app"))]))
    events = lambda: next(w for w in kube_state(gw)["watches"] if w["kind"] == "Ingress")["events"]  # noqa: E731
    wait_until(lambda: events() >= 1000, timeout=30, what="1000 events seen")
    wait_until(lambda: name_at(gw, "/") == 404 and name_at(gw, "/final") == "app", timeout=15, what="last state")
    burst = rebuilds(gw) - before
    assert 1 <= burst <= 2, burst
    # the same object again (only resourceVersion changes): ignored, no rebuild
    translations = kube_state(gw)["translations"]
    api.apply(ingress("app", [rule("a.test", path("/final", "app"))]))
    wait_until(lambda: events() >= 1001, what="no-op event seen")
    ingresses = next(w for w in kube_state(gw)["watches"] if w["kind"] == "Ingress")
    assert ingresses["ignored"] >= 1
    assert kube_state(gw)["translations"] == translations
    print(f"rebuilds for a 1000-event burst: {burst}")


def test_namespaces_and_label_selector_limit_what_is_served(api, backends, gateway, tmp_path):
    b = backends("team")
    api.apply(ingress_class(), service("app", namespace="team-a"), slice_for("app", [b.port], namespace="team-a"),
              service("app", namespace="team-b"), slice_for("app", [b.port], namespace="team-b"),
              ingress("shown", [rule("shown.test", path("/", "app"))], namespace="team-a", labels={"expose": "yes"}),
              ingress("hidden", [rule("hidden.test", path("/", "app"))], namespace="team-a"),
              ingress("other", [rule("other.test", path("/", "app"))], namespace="team-b", labels={"expose": "yes"}))
    gw = gateway(config(api, tmp_path, provider='namespaces = ["team-a"]\nlabel_selector = "expose=yes"'))
    wait_until(lambda: name_at(gw, "/", "shown.test") == "team", timeout=15, what="selected ingress served")
    assert name_at(gw, "/", "hidden.test") == 404
    assert name_at(gw, "/", "other.test") == 404
    assert any("labelSelector=expose" in q for q in api.watch_requests("ingresses"))


def test_a_service_without_ready_endpoints_answers_503_and_a_file_router_can_outrank_ingresses(
        api, backends, gateway, tmp_path):
    pods(api, backends, "app")
    idle_port = free_port()
    api.apply(ingress_class(), service("idle"),
              slice_for("idle", [idle_port], terminating=(idle_port,)),      # its only pod is terminating
              ingress("web", [rule("a.test", path("/", "app"), path("/idle", "idle"))]))
    override = backends("override")
    extra = f"""
[routers.override]
rule = "Host(`a.test`) && PathPrefix(`/override`)"
service = "override"
priority = 100
[services.override.load_balancer]
servers = [{{url = "{override.url}"}}]
"""
    api.apply(ingress("shadow", [rule("a.test", path("/override", "app", path_type="Exact"))]))
    gw = gateway(config(api, tmp_path, extra=extra))
    wait_until(lambda: name_at(gw, "/") == "app", timeout=15, what="the Ingress served")
    r = httpx.get(gw.url + "/idle", headers={"Host": "a.test"}, timeout=5)
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
    assert "no ready endpoints" in r.text
    assert "no ready endpoints" in " ".join(kube_state(gw)["errors"]["Ingress default/web"])
    assert name_at(gw, "/override") == "override"     # the file's priority 100 beats the Ingress's exact path


def test_a_refused_watch_is_retried_with_backoff_and_reported_until_it_recovers(api, backends, gateway, tmp_path):
    pods(api, backends, "app")
    api.apply(ingress_class(), ingress("app", [rule("a.test", path("/", "app"))]))
    gw = gateway(config(api, tmp_path))
    wait_until(lambda: name_at(gw, "/") == "app", timeout=15, what="ingress served")
    api.refuse_watches("ingresses", 2)
    api.compact()                  # the open watch ends (410); the relist works, the next two watches get 500

    def provider() -> dict:
        return next(p for p in httpx.get(gw.admin + "/api/providers", timeout=5).json() if p["name"] == "kubernetes")

    view = wait_until(lambda: (lambda v: v if next(w for w in v["watches"] if w["kind"] == "Ingress")["reconnects"]
                               == 2 else None)(provider()), timeout=20, what="two refused watches retried")
    ingresses = next(w for w in view["watches"] if w["kind"] == "Ingress")
    assert ingresses["last_error"]["error"].startswith("500") and view["last_error"].startswith("Ingress: 500")
    assert name_at(gw, "/") == "app"                     # the last good config keeps serving meanwhile
    api.apply(ingress("later", [rule("later.test", path("/", "app"))]))       # seen only by a working watch
    wait_until(lambda: name_at(gw, "/", "later.test") == "app", timeout=20, what="the watch works again")
