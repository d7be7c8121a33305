"""Prometheus metrics at /api/gateway/metrics, through the real binary: node-wide totals across workers,
totals that survive a worker's kill -9, promtool-clean output, OpenMetrics negotiation, per-process CPU/RSS."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import httpx
import pytest
from harness import free_port, wait_until
from obs_util import scrape, scrape_text, value

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.api]
rule = "PathPrefix(`/api`)"
service = "svc"
[routers.slow]
rule = "PathPrefix(`/delay`)"
service = "svc"
[routers.dead]
rule = "PathPrefix(`/dead`)"
service = "gone"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
[services.gone.load_balancer]
servers = [{url = "http://127.0.0.1:DEADPORT"}]
"""


def _config(backend_url: str) -> str:
    return CONFIG.replace("BACKEND", backend_url).replace("DEADPORT", str(free_port()))


def _send(g, path: str, n: int) -> None:
    # a new connection per request, so SO_REUSEPORT spreads them over the workers
    for _ in range(n):
        r = httpx.get(g.url + path, headers={"Connection": "close"}, timeout=5)
        assert r.status_code == 200


def test_requests_counted_node_wide_across_4_workers_and_kept_after_kill_9(gateway, backends):
    g = gateway(_config(backends().url), workers=4)
    _send(g, "/api/x", 200)
    ok = {"entrypoint": "web", "method": "GET", "code_class": "2xx"}

    def counted(n):
        s = scrape(g)
        return (value(s, "a3s_gateway_requests_total", **ok) == n
                and value(s, "a3s_gateway_router_requests_total", router="api", code_class="2xx") == n
                and value(s, "a3s_gateway_router_request_duration_seconds_count", router="api") == n
                and value(s, "a3s_gateway_service_request_duration_seconds_count", service="svc") == n) and s

    s = wait_until(lambda: counted(200), what="200 requests counted")
    served = {k for k, v in s.items() if k[0] == "a3s_gateway_requests_total" and v}
    assert served, "no request counted"
    # every worker took some of them, so the kill below takes counts with it unless they are folded
    victim = g.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(g.worker_pids()) == 4 and victim not in g.worker_pids(), what="worker replaced")
    s = scrape(g)
    assert value(s, "a3s_gateway_requests_total", **ok) == 200
    assert value(s, "a3s_gateway_router_requests_total", router="api") == 200
    assert value(s, "a3s_gateway_router_request_duration_seconds_count", router="api") == 200
    assert value(s, "a3s_gateway_worker_restarts_total") == 1
    _send(g, "/api/y", 50)
    wait_until(lambda: counted(250), what="250 requests counted after the restart")


def test_histogram_buckets_bytes_and_error_classes(gateway, backends):
    g = gateway(_config(backends().url), workers=2)
    assert httpx.get(g.url + "/delay/0.3", timeout=5).status_code == 200
    assert httpx.post(g.url + "/api/up", content=b"x" * 1000, timeout=5).status_code == 200
    assert httpx.get(g.url + "/nothing-here", timeout=5).status_code == 404
    assert httpx.get(g.url + "/dead", timeout=5).status_code == 502

    def ready():
        s = scrape(g)
        return value(s, "a3s_gateway_router_request_duration_seconds_count", router="slow") == 1 and s

    s = wait_until(ready, what="slow request counted")
    b = "a3s_gateway_router_request_duration_seconds_bucket"
    assert value(s, b, router="slow", le="0.25") == 0
    assert value(s, b, router="slow", le="0.5") == 1
    assert value(s, b, router="slow", le="+Inf") == 1
    assert 0.3 <= value(s, "a3s_gateway_router_request_duration_seconds_sum", router="slow") < 0.5
    assert value(s, "a3s_gateway_router_request_bytes_total", router="api") == 1000
    assert value(s, "a3s_gateway_router_response_bytes_total", router="api") > 0
    assert value(s, "a3s_gateway_requests_total", method="POST", code_class="2xx") == 1
    assert value(s, "a3s_gateway_requests_total", method="GET", code_class="4xx") == 1
    assert value(s, "a3s_gateway_router_requests_total", router="dead", service="gone", code_class="5xx") == 1
    assert value(s, "a3s_gateway_gateway_responses_total", router="dead", code="502") == 1
    assert value(s, "a3s_gateway_backend_requests_total", service="svc", code_class="2xx") == 2
    assert value(s, "a3s_gateway_backend_inflight_requests", service="svc") == 0


def test_open_connections_and_backend_health_gauges(gateway, backends):
    g = gateway(_config(backends().url), workers=2)
    conns = [httpx.Client(base_url=g.url, timeout=5) for _ in range(3)]
    try:
        for c in conns:
            assert c.get("/api/keep").status_code == 200
        wait_until(lambda: value(scrape(g), "a3s_gateway_open_connections", entrypoint="web", protocol="http1") == 3,
                   what="3 open connections")
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: value(scrape(g), "a3s_gateway_open_connections", entrypoint="web") == 0,
               what="connections closed")
    s = scrape(g)
    assert value(s, "a3s_gateway_backend_up", service="svc") == 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: install Debian's prometheus package "
                    "(.ci/install-deps does)")
def test_promtool_check_metrics_passes_on_the_scrape(gateway, backends):
    g = gateway(_config(backends().url), workers=2)
    _send(g, "/api/x", 5)
    httpx.get(g.url + "/dead", timeout=5)
    text = scrape_text(g).content
    r = subprocess.run(["promtool", "check", "metrics"], check=False, input=text, capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout + r.stderr).decode() + text.decode()


def test_openmetrics_when_the_scraper_asks_for_it(gateway, backends):
    g = gateway(_config(backends().url), workers=2)
    _send(g, "/api/x", 3)
    plain = scrape_text(g)
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    om = scrape_text(g, "application/openmetrics-text; version=1.0.0; charset=utf-8,text/plain;q=0.5")
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.rstrip().endswith("# EOF")
    assert "# TYPE a3s_gateway_requests counter" in om.text
    assert 'a3s_gateway_requests_total{code_class="2xx",entrypoint="web",method="GET"} 3' in om.text


def test_per_worker_process_cpu_and_rss(gateway, backends):
    g = gateway(_config(backends().url), workers=3)
    _send(g, "/api/x", 30)
    s = scrape(g)
    for proc in ("master", "worker-0", "worker-1", "worker-2"):
        assert value(s, "a3s_gateway_process_resident_memory_bytes", process=proc) > 5e6, proc
        assert ("a3s_gateway_process_cpu_seconds_total", frozenset({("process", proc)})) in s
    assert value(s, "a3s_gateway_process_cpu_seconds_total") > 0
    assert value(s, "a3s_gateway_workers") == 3
    assert value(s, "a3s_gateway_config_reloads_total") == 0
    assert value(s, "a3s_gateway_config_last_reload_success_timestamp_seconds") > 1.6e9
