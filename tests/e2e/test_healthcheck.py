"""Active health checks: run once per node in the master, visible to every worker through the plane."""

from __future__ import annotations

import json
import time
import urllib.request

import httpx
from harness import wait_until

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.r]
rule = "PathPrefix(`/`)"
service = "svc"
[services.svc.load_balancer]
servers = [{url = "A"}, {url = "B"}]
[services.svc.load_balancer.health_check]
path = "/health"
interval = "200ms"
timeout = "500ms"
unhealthy_threshold = 2
healthy_threshold = 2
"""


def names(g, n: int = 30) -> set[str]:
    """Backends that answered ``n`` requests, each on a fresh connection (so both workers serve some)."""
    out = set()
    for _ in range(n):
        r = httpx.get(g.url + "/x", headers={"Connection": "close"})
        assert r.status_code == 200, r.text
        out.add(r.json()["name"])
    return out


def stats(url: str) -> int:
    with urllib.request.urlopen(url + "/stats", timeout=2) as r:
        return json.loads(r.read())["requests"]


def test_failing_backend_is_taken_out_and_comes_back_in_every_worker(gateway, backends):
    a, b = backends("a"), backends("b")
    g = gateway(CONFIG.replace("A", a.url).replace("B", b.url), workers=2)
    assert names(g) == {"a", "b"}
    port = b.port
    b.stop()
    started = time.monotonic()
    # down within interval x unhealthy_threshold (+ one interval and the probe timeout)
    wait_until(lambda: not g.health()["control"]["health_checks"][f"svc|{b.url}"]["healthy"], 3,
               what="backend b marked down")
    took = time.monotonic() - started
    assert took < 0.2 * 2 + 0.2 + 0.5 + 0.5, took
    assert names(g) == {"a"}                     # no request fails: every worker skips b
    b2 = backends("b", port=port)
    wait_until(lambda: g.health()["control"]["health_checks"][f"svc|{b2.url}"]["healthy"], 5,
               what="backend b back")
    wait_until(lambda: names(g, 20) == {"a", "b"}, 5, what="b serving again")


def test_one_probe_stream_per_backend_whatever_the_worker_count(gateway, backends):
    a, b = backends("a"), backends("b")
    gateway(CONFIG.replace("A", a.url).replace("B", b.url), workers=4)
    wait_until(lambda: stats(a.url) >= 3, 5, what="probes arriving")
    first, t0 = stats(a.url), time.monotonic()
    wait_until(lambda: time.monotonic() - t0 > 2.0, 5)
    rate = (stats(a.url) - first) / (time.monotonic() - t0)
    assert 2.5 <= rate <= 6.5, rate               # one probe per 200 ms, not one per worker


def test_reload_keeps_state_of_unchanged_backends_and_stops_removed_checks(gateway, backends):
    a, b = backends("a"), backends("b")
    cfg = CONFIG.replace("A", a.url).replace("B", b.url)
    g = gateway(cfg, workers=2)
    b.stop()
    wait_until(lambda: not g.health()["control"]["health_checks"][f"svc|{b.url}"]["healthy"], 3)
    g.reload(cfg + '[routers.other]\nrule = "Path(`/other`)"\nservice = "svc"\n')
    assert g.health()["control"]["health_checks"][f"svc|{b.url}"]["healthy"] is False
    assert names(g) == {"a"}
    # removing the check: its task stops and the backend counts as healthy again
    g.reload(cfg.split("[services.svc.load_balancer.health_check]")[0])
    assert g.health()["control"]["health_checks"] == {}
    before = stats(a.url)
    t0 = time.monotonic()
    wait_until(lambda: time.monotonic() - t0 > 0.6, 2)
    assert stats(a.url) == before                  # no probe after the reload
