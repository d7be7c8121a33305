"""Providers through the real binary: discovery seeds and DNS-resolved services."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx
import pytest
from harness import HERE, free_port, port_open, wait_until


class Seed:
    def __init__(self, tmp: Path, name: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.doc = tmp / f"{name}-{self.port}.json"
        self.proc = subprocess.Popen([sys.executable, str(HERE / "discovery_backend.py"), "--host", host,
                                      "--port", str(self.port), "--name", name, "--doc", str(self.doc)])
        wait_until(lambda: self._up(host), what=f"seed {name}")

    def _up(self, host: str) -> bool:
        try:
            urllib.request.urlopen(f"http://{host}:{self.port}/health", timeout=1).read()
            return True
        except OSError:
            return False

    def publish(self, **doc: object) -> None:
        tmp = self.doc.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.doc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def seeds(tmp_path):
    started: list[Seed] = []

    def start(name: str, **kw: object) -> Seed:
        s = Seed(tmp_path, name, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


DISCOVERY = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.static]
rule = "PathPrefix(`/static`)"
service = "beta"
[services.beta.load_balancer]
servers = [{url = "STATIC"}]
[providers.discovery]
seeds = [{url = "SEED_A"}, {url = "SEED_B"}]
poll_interval_secs = 1
timeout_secs = 1
failure_threshold = 2
"""


def get(g, path: str) -> tuple[int, str | None]:
    r = httpx.get(g.url + path)
    return r.status_code, (r.json().get("name") if r.status_code == 200 else None)


def test_discovery_adds_updates_and_removes_seeds_and_static_wins(gateway, backends, seeds):
    static = backends("static-beta")
    a, b = seeds("alpha"), seeds("beta-discovered")
    a.publish(name="alpha", version="1", routes=[{"rule": "PathPrefix(`/alpha`)"}])
    # b claims the static service name "beta" and a router of its own: static wins for the service
    b.publish(name="beta", version="1", routes=[{"rule": "PathPrefix(`/beta-discovered`)"}])
    g = gateway(DISCOVERY.replace("STATIC", static.url).replace("SEED_A", a.url).replace("SEED_B", b.url),
                workers=2)
    wait_until(lambda: get(g, "/alpha") == (200, "alpha"), 10, what="alpha discovered")
    assert get(g, "/static") == (200, "static-beta")
    assert get(g, "/beta-discovered")[0] == 404
    assert "static config defines it" in g.logs()
    # a version bump with a new route
    a.publish(name="alpha", version="2", routes=[{"rule": "PathPrefix(`/alpha`)"},
                                                 {"rule": "PathPrefix(`/alpha-v2`)", "priority": 5}])
    wait_until(lambda: get(g, "/alpha-v2") == (200, "alpha"), 10, what="version 2 applied")
    # an invalid document (unknown middleware) is rejected; version 2 stays
    a.publish(name="alpha", version="3", routes=[{"rule": "PathPrefix(`/alpha`)", "middlewares": ["nope"]}])
    wait_until(lambda: "rejected" in (g.health()["control"]["discovery"]["seeds"][0]["last_error"] or ""), 10)
    assert get(g, "/alpha-v2") == (200, "alpha")
    # failing health, then gone: removed after failure_threshold polls
    Path(str(a.doc) + ".down").write_text("")
    wait_until(lambda: get(g, "/alpha")[0] == 404, 10, what="unhealthy seed removed")
    Path(str(a.doc) + ".down").unlink()
    a.publish(name="alpha", version="4", routes=[{"rule": "PathPrefix(`/alpha`)"}])
    wait_until(lambda: get(g, "/alpha") == (200, "alpha"), 10, what="seed back")
    a.stop()
    wait_until(lambda: get(g, "/alpha")[0] == 404, 10, what="vanished seed removed")
    assert get(g, "/static") == (200, "static-beta")


@pytest.fixture
def challtestsrv():
    if shutil.which("pebble-challtestsrv") is None:
        pytest.skip("pebble-challtestsrv is not installed (apt-get install pebble; .ci/install-deps does it)")
    dns_port, mgmt = free_port(), free_port()
    proc = subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "", "-defaultIPv6", "",
                             "-dns01", f"127.0.0.1:{dns_port}", "-management", f"127.0.0.1:{mgmt}",
                             "-http01", "", "-https01", "", "-tlsalpn01", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(mgmt), 10, what="challtestsrv")

    def call(path: str, body: dict) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{mgmt}/{path}", data=json.dumps(body).encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=2).read()

    yield dns_port, call
    proc.terminate()
    proc.wait(5)


DNS = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.r]
rule = "PathPrefix(`/`)"
service = "svc"
[services.svc.load_balancer]
servers = [{url = "http://api.gateway.test:PORT"}]
[providers.dns]
refresh_secs = 1
timeout = "500ms"
nameservers = ["127.0.0.1:DNSPORT"]
"""


def test_dns_provider_follows_address_changes_and_keeps_last_good_set(gateway, seeds, challtestsrv):
    dns_port, call = challtestsrv
    port = free_port()
    one, two = seeds("on-127.0.0.1", port=port), seeds("on-127.0.0.2", host="127.0.0.2", port=port)
    call("add-a", {"host": "api.gateway.test.", "addresses": ["127.0.0.2"]})
    g = gateway(DNS.replace("DNSPORT", str(dns_port)).replace("PORT", str(port)), workers=2)
    assert get(g, "/x") == (200, "on-127.0.0.2")
    gen = g.health()["generation"]
    call("clear-a", {"host": "api.gateway.test."})          # add-a appends: replace the set
    call("add-a", {"host": "api.gateway.test.", "addresses": ["127.0.0.1"]})
    wait_until(lambda: {get(g, "/x") for _ in range(6)} == {(200, "on-127.0.0.1")}, 10, what="new address used")
    assert g.health()["generation"] > gen and g.health()["last_reload"]["ok"] is True
    # the name stops resolving: the last good address keeps serving
    call("clear-a", {"host": "api.gateway.test."})
    wait_until(lambda: g.health()["control"]["dns"]["errors"], 10, what="resolution failure noticed")
    assert get(g, "/x") == (200, "on-127.0.0.1"), (httpx.get(g.url + "/x").text, g.health()["control"]["dns"])
    assert "keeping the last good addresses" in g.logs()
    del one, two
