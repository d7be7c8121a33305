"""The admin API's object views and its reload, through the real binary with several workers and real backends:
entrypoints, routers, services (health from the checks, in-flight from the plane, breakers), middlewares,
certificates and providers; 404s; secrets never shown; ``POST /api/gateway/reload`` and its token."""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from certs import CA
from harness import Backend, Gateway, free_port, wait_until

TOKEN = "admin-TOKEN-never-shown-42"
SECRETS = ("pw-BACKEND-secret", "pw-BASIC-secret", "jwt-HS256-secret-value", "api-KEY-secret-1", TOKEN)

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.websecure]
address = "127.0.0.1:{secure}"
tls = {cert_file = "%(cert)s", key_file = "%(key)s"}
[entrypoints.acmesecure]
address = "127.0.0.1:{acmesecure}"
tls = {acme = true}
[admin]
address = "127.0.0.1:{admin}"
token = "%(token)s"

[acme]
email = "ops@example.org"
domains = ["a.example"]
directory_url = "http://127.0.0.1:%(dead)d/dir"
storage_path = "%(storage)s"
retry_interval = "1h"
[providers.dns]
[providers.discovery]
seeds = [{url = "http://127.0.0.1:%(dead)d/seed"}]

[routers.app]
rule = "PathPrefix(`/`)"
service = "app"
[routers.hc]
rule = "PathPrefix(`/hc`)"
service = "checked"
entrypoints = ["web"]
[routers.down]
rule = "PathPrefix(`/down`)"
service = "broken"
middlewares = ["cb"]
[routers.secured]
rule = "PathPrefix(`/secured`)"
service = "app"
middlewares = ["basic", "token", "keys"]

[services.app.load_balancer]
servers = [{url = "%(app)s"}]
[services.checked.load_balancer]
servers = [{url = "%(app)s"}, {url = "http://carol:pw-BACKEND-secret@127.0.0.1:%(dead)d"}]
[services.checked.load_balancer.health_check]
path = "/"
interval = "100ms"
unhealthy_threshold = 1
[services.broken.load_balancer]
servers = [{url = "http://bob:pw-BACKEND-secret@127.0.0.1:%(dead)d", weight = 3}]

[middlewares.cb]
type = "circuit-breaker"
failure_threshold = 2
cooldown_secs = "1h"
[middlewares.basic]
type = "basic-auth"
username = "alice"
password = "pw-BASIC-secret"
[middlewares.token]
type = "jwt"
value = "jwt-HS256-secret-value"
[middlewares.keys]
type = "api-key"
keys = ["api-KEY-secret-1"]
"""


def api(g: Gateway, path: str, method: str = "GET", token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, g.admin + path, headers=headers, timeout=30)


def ok(g: Gateway, path: str) -> Any:
    r = api(g, path)
    assert r.status_code == 200, (path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Backend, Path]]:
    tmp = tmp_path_factory.mktemp("admin-api")
    pair = CA(tmp / "ca").issue("localhost", "gw.example", file="gw")
    app = Backend("app")
    config = CONFIG % {"cert": pair.cert, "key": pair.key, "token": TOKEN, "dead": free_port(),
                       "storage": tmp / "acme", "app": app.url}
    g = Gateway(config, tmp, workers=3, wait=False, secure=free_port(), acmesecure=free_port())
    wait_until(lambda: api(g, "/api/gateway/health").json()["state"] == "running", 20, what="gateway running")
    yield g, app, pair.cert
    g.stop()
    app.stop()


def test_entrypoints_list_every_entrypoint_with_its_routers(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, cert = node
    eps = by_name(ok(g, "/api/entrypoints"))
    assert set(eps) == {"web", "websecure", "acmesecure"}
    web = ok(g, "/api/entrypoints/web")
    assert web == eps["web"]
    assert web["address"] == f"127.0.0.1:{g.port}" and web["protocol"] == "http"
    assert set(web["routers"]) >= {"app", "hc", "down", "secured"}
    assert "hc" not in eps["websecure"]["routers"]          # hc names only web
    assert eps["websecure"]["tls"]["cert_file"] == str(cert)


def test_routers_show_rule_service_middlewares_and_provider(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, _ = node
    routers = by_name(ok(g, "/api/routers"))
    down = ok(g, "/api/routers/down")
    assert down == routers["down"]
    assert (down["rule"], down["service"], down["middlewares"], down["provider"]) == (
        "PathPrefix(`/down`)", "broken", ["cb"], "file")
    assert set(down["entrypoints"]) == {"web", "websecure", "acmesecure"}     # none named: every HTTP one
    assert routers["hc"]["entrypoints"] == ["web"]
    assert routers["acme-http01@internal"]["provider"] == "internal"      # the ACME HTTP-01 router


def test_unknown_names_and_paths_answer_404_json(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, _ = node
    for path in ("/api/routers/nope", "/api/services/nope", "/api/middlewares/nope", "/api/entrypoints/nope"):
        r = api(g, path)
        assert r.status_code == 404 and "nope" in r.json()["error"], (path, r.text)
    r = api(g, "/api/whatever")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = api(g, "/api/gateway/reload")                  # GET on a POST-only endpoint
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"} and r.headers["allow"] == "POST"


def test_service_shows_a_backend_failing_its_health_check_as_down(node: tuple[Gateway, Backend, Path]) -> None:
    g, app, _ = node

    def servers() -> dict[str, dict[str, Any]]:
        return {s["url"]: s for s in ok(g, "/api/services/checked")["servers"]}

    dead = next(u for u in servers() if u != app.url)
    assert dead.startswith("http://carol:***@")         # its check's state is found under the masked URL
    wait_until(lambda: servers()[dead]["health"] == "down", 10, what="dead backend down")
    now = servers()
    assert now[app.url]["health"] == "up" and now[app.url]["health_check"]["healthy"] is True
    assert now[dead]["health_check"]["healthy"] is False and now[dead]["health_check"]["last_error"]
    svc = by_name(ok(g, "/api/services"))["checked"]
    assert svc["health_check"]["path"] == "/" and svc["routers"] == ["hc"] and svc["provider"] == "file"


def test_service_counts_a_held_request_in_flight(node: tuple[Gateway, Backend, Path]) -> None:
    g, app, _ = node

    def inflight() -> int:
        return ok(g, "/api/services/app")["servers"][0]["inflight"]

    assert inflight() == 0
    with socket.create_connection(("127.0.0.1", g.port)) as s:
        s.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: inflight() == 1, 10, what="held request in flight")
    wait_until(lambda: inflight() == 0, 10, what="in-flight back to 0")
    assert ok(g, "/api/services/app")["servers"][0]["requests"] >= 1


def test_opened_breaker_shows_open_on_its_service_and_middleware(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, _ = node
    svc = ok(g, "/api/services/broken")
    assert svc["circuit_breakers"] == [{"middleware": "cb", "state": "closed", "trips": 0,
                                        "consecutive_failures": 0}]
    assert svc["servers"][0]["weight"] == 3

    def tripped() -> bool:
        with httpx.Client(timeout=10) as c:
            return c.get(g.url + "/down", headers={"Connection": "close"}).status_code == 503

    wait_until(tripped, 10, what="breaker open")
    assert ok(g, "/api/services/broken")["circuit_breakers"][0]["state"] == "open"
    cb = ok(g, "/api/middlewares/cb")
    assert cb["type"] == "circuit-breaker" and cb["routers"] == ["down"]
    assert cb["circuit_breaker"]["state"] == "open" and cb["circuit_breaker"]["trips"] >= 1
    assert cb["replies"]["503"] >= 1


def test_middlewares_show_type_settings_and_routers(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, _ = node
    mws = by_name(ok(g, "/api/middlewares"))
    assert set(mws) == {"cb", "basic", "token", "keys"}
    basic = ok(g, "/api/middlewares/basic")
    assert basic["type"] == "basic-auth" and basic["username"] == "alice" and basic["password"] == "***"
    assert basic["routers"] == ["secured"] and "circuit_breaker" not in basic
    assert mws["token"]["value"] == "***" and mws["keys"]["keys"] == ["***"]


def test_no_endpoint_shows_a_secret(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, _ = node
    paths = ["/api/entrypoints", "/api/routers", "/api/services", "/api/middlewares", "/api/certificates",
             "/api/providers", "/api/gateway/config"]
    for kind in ("entrypoints", "routers", "services", "middlewares"):
        paths += [f"/api/{kind}/{item['name']}" for item in ok(g, f"/api/{kind}")]
    for path in paths:
        text = api(g, path).text
        assert not [s for s in SECRETS if s in text], path
    assert ok(g, "/api/services/broken")["servers"][0]["url"].startswith("http://bob:***@127.0.0.1:")


def test_certificates_show_names_expiry_and_acme_status(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, cert = node
    certs = ok(g, "/api/certificates")
    files = [c for c in certs if c["source"] == "file"]
    assert len(files) == 1
    f = files[0]
    assert (f["cert_file"], f["names"], f["entrypoints"], f["error"]) == (
        str(cert), ["localhost", "gw.example"], ["websecure"], None)
    left = datetime.datetime.fromisoformat(f["not_after"]) - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=23) < left <= datetime.timedelta(days=1)

    def acme() -> dict[str, Any]:
        return next(c for c in ok(g, "/api/certificates") if c["source"] == "acme")

    order = wait_until(lambda: acme()["status"] == "error" and acme(), 15, what="ACME order failed")
    assert order["names"] == ["a.example"] and order["entrypoints"] == ["acmesecure"]
    assert order["last_error"] and order["not_after"] is None


def test_providers_show_last_sync_and_last_error(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, _ = node
    providers = by_name(ok(g, "/api/providers"))
    assert set(providers) == {"file", "discovery", "dns"}
    assert providers["file"]["config"] == str(g.config_path) and providers["file"]["last_error"] is None
    assert providers["file"]["last_sync"] > 0 and providers["dns"]["last_sync"] > 0
    disc = wait_until(lambda: by_name(ok(g, "/api/providers"))["discovery"]["last_error"] and
                      by_name(ok(g, "/api/providers"))["discovery"], 10, what="discovery seed error")
    assert disc["last_sync"] is None and "/seed" in disc["last_error"]


def test_every_endpoint_needs_the_token_when_one_is_set(node: tuple[Gateway, Backend, Path]) -> None:
    g, _, _ = node
    for path, method in (("/api/routers", "GET"), ("/api/services/app", "GET"), ("/api/gateway/reload", "POST")):
        for token in (None, "wrong", TOKEN + "x"):
            r = api(g, path, method, token)
            assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}, (path, token)
            assert r.headers["www-authenticate"].startswith("Bearer")


RELOAD = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
%(token)s
[routers.app]
rule = "PathPrefix(`/app`)"
service = "app"
%(extra)s
[services.app.load_balancer]
servers = [{url = "%(app)s"}]
"""
NEW_ROUTER = '[routers.new]\nrule = "PathPrefix(`/new`)"\nservice = "app"\n'
BAD_ROUTER = '[routers.bad]\nrule = "PathPrefix(`/bad`)"\nservice = "missing"\n'


def test_post_reload_applies_a_new_route_and_a_bad_config_keeps_the_old_one(gateway, backends) -> None:
    app = backends("app")

    def config(extra: str) -> str:
        return RELOAD % {"token": f'token = "{TOKEN}"', "extra": extra, "app": app.url}

    g = gateway(config(""), workers=3, wait=False)
    wait_until(lambda: api(g, "/api/gateway/health").json()["state"] == "running", 20, what="gateway running")
    assert httpx.get(g.url + "/new/x").status_code == 404
    g.write_config(config(NEW_ROUTER))
    r = api(g, "/api/gateway/reload", "POST")
    assert r.status_code == 200 and r.json() == {"status": "ok", "generation": 2}
    assert ok(g, "/api/routers/new")["rule"] == "PathPrefix(`/new`)"
    for _ in range(6):      # every worker has the new route (fresh connections spread over them)
        assert httpx.get(g.url + "/new/x", headers={"Connection": "close"}).status_code == 200

    g.write_config(config(NEW_ROUTER + BAD_ROUTER))
    r = api(g, "/api/gateway/reload", "POST")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["status"] == "error" and body["generation"] == 2
    problem = next(p for p in body["problems"] if p["key"] == "routers.bad.service")
    assert problem["file"] == str(g.config_path) and "missing" in problem["reason"]
    assert api(g, "/api/routers/bad").status_code == 404
    assert httpx.get(g.url + "/new/x").status_code == 200
    health = ok(g, "/api/gateway/health")
    assert health["generation"] == 2 and health["last_reload"]["ok"] is False
    assert by_name(ok(g, "/api/providers"))["file"]["last_error"]


def test_post_reload_without_a_configured_token_is_forbidden(gateway, backends) -> None:
    app = backends("app")
    g = gateway(RELOAD % {"token": "", "extra": "", "app": app.url})
    g.write_config(RELOAD % {"token": "", "extra": NEW_ROUTER, "app": app.url})
    r = api(g, "/api/gateway/reload", "POST", token=None)
    assert r.status_code == 403 and "admin.token" in r.json()["error"]
    assert api(g, "/api/gateway/reload", "POST", token="anything").status_code == 403
    assert g.health()["generation"] == 1 and api(g, "/api/routers/new", token=None).status_code == 404
    assert api(g, "/api/routers", token=None).status_code == 200       # reads stay open on loopback
