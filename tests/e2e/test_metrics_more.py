"""More metrics through the real binary: replies by middleware (folded when a worker dies), rate-limit-redis
fail-opens, the AI extensions' counters and gauges, model-probe states; promtool-clean."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import httpx
import pytest
from ai_support import AiBackend
from harness import free_port, wait_until
from obs_util import scrape, scrape_text, value

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "%(app)s"}]
[services.llm.load_balancer]
servers = [{url = "%(llm)s"}]
[services.probed.load_balancer]
servers = [{url = "%(llm)s"}]
[services.probed.load_balancer.agent_health]
interval = "100ms"
timeout = "1s"

[middlewares.cors]
type = "cors"
allowed_origins = ["https://a.example"]
[middlewares.auth]
type = "api-key"
keys = ["k-one"]
[middlewares.block]
type = "ip-block"
blocked_ips = ["127.0.0.0/8"]
[middlewares.cluster-limit]
type = "rate-limit-redis"
redis_url = "redis://127.0.0.1:%(dead)d/0"
rate = 5
period = "1h"
timeout_ms = 100
[middlewares.privacy]
type = "privacy-router"
tee_service = "llm"
[middlewares.meter]
type = "token-meter"
max_tokens = 100000
window = "10s"
keys = ["user", "global"]
[middlewares.prio]
type = "priority"
max_concurrency = 4

[routers.auth]
rule = "PathPrefix(`/auth`)"
service = "app"
middlewares = ["cors", "auth"]
[routers.blocked]
rule = "PathPrefix(`/blocked`)"
service = "app"
middlewares = ["block"]
[routers.redis]
rule = "PathPrefix(`/redis`)"
service = "app"
middlewares = ["cluster-limit"]
[routers.chat]
rule = "PathPrefix(`/chat`)"
service = "llm"
middlewares = ["privacy"]
[routers.v1]
rule = "PathPrefix(`/v1`)"
service = "llm"
middlewares = ["prio", "meter"]
[routers.probed]
rule = "PathPrefix(`/probed`)"
service = "probed"
"""


@pytest.fixture
def env(gateway, backends):
    llm = AiBackend("llm")
    try:
        g = gateway(CONFIG % {"app": backends().url, "llm": llm.url, "dead": free_port()}, workers=4)
        yield g, llm
    finally:
        llm.stop()


def _get(g, path: str, **headers: str) -> httpx.Response:
    # a new connection per request, so SO_REUSEPORT spreads them over the workers
    return httpx.get(g.url + path, headers={"Connection": "close", **headers}, timeout=5)


def test_replies_counted_by_middleware_and_kept_after_a_worker_is_killed(env):
    g, _ = env
    for _ in range(40):
        r = _get(g, "/auth/x", Origin="https://a.example")
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == "https://a.example"
    for _ in range(5):
        assert _get(g, "/blocked").status_code == 403
    assert _get(g, "/auth/x", **{"X-API-Key": "k-one"}).status_code == 200      # allowed: not counted

    def counts():
        s = scrape(g)
        return (value(s, "a3s_gateway_middleware_rejections_total", middleware="auth", code="401"),
                value(s, "a3s_gateway_middleware_rejections_total", middleware="block", code="403"),
                value(s, "a3s_gateway_middleware_rejections_total", middleware="cors"))

    wait_until(lambda: counts() == (40, 5, 0), what="rejections counted by middleware")
    victim = g.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(g.worker_pids()) == 4 and victim not in g.worker_pids(), what="worker replaced")
    assert counts() == (40, 5, 0)
    assert _get(g, "/auth/y").status_code == 401
    wait_until(lambda: counts() == (41, 5, 0), what="counting goes on after the restart")
    # the label set is the config's middleware names and status codes: no paths, no client addresses
    labels = {lab for (n, lab) in scrape(g) if n == "a3s_gateway_middleware_rejections_total"}
    assert {dict(lab)["middleware"] for lab in labels} == {"auth", "block"}


def test_rate_limit_redis_fail_open_counted_on_the_plane(env):
    g, _ = env
    assert value(scrape(g), "a3s_gateway_rate_limit_redis_fail_open_total", middleware="cluster-limit") == 0
    for _ in range(12):
        assert _get(g, "/redis").status_code == 200        # Redis is down: let through
    wait_until(lambda: value(scrape(g), "a3s_gateway_rate_limit_redis_fail_open_total",
                             middleware="cluster-limit") == 12, what="12 fail-opens counted node-wide")


def test_ai_extension_counters_gauges_and_probe_states(env):
    g, llm = env
    with httpx.Client(base_url=g.url, timeout=10) as c:
        for text in ("charge card 4111 1111 1111 1111 please", "what is the weather", "write a.person@example.com"):
            r = c.post("/chat", json={"messages": [{"role": "user", "content": text}]})
            assert r.status_code == 200
        for _ in range(3):
            r = c.post("/v1/chat/completions", json={"messages": []}, headers={"X-User-Id": "u1"})
            assert r.status_code == 200
    used = 3 * 30                    # the fake backend reports usage.total_tokens = 30

    def ready():
        s = scrape(g)
        return (value(s, "a3s_gateway_privacy_requests_total", level="restricted") == 1
                and value(s, "a3s_gateway_privacy_requests_total", level="public") == 1
                and value(s, "a3s_gateway_privacy_requests_total", level="internal") == 1
                and value(s, "a3s_gateway_privacy_tee_routed_total") == 1
                and value(s, "a3s_gateway_llm_tokens_total", key_kind="user") == used
                and value(s, "a3s_gateway_llm_tokens_total", key_kind="global") == used
                and value(s, "a3s_gateway_backend_agent_state", service="probed", state="ready") == 1) and s

    s = wait_until(ready, what="AI counters and probe state")
    assert value(s, "a3s_gateway_token_rejections_total") == 0
    assert value(s, "a3s_gateway_backend_agent_state", service="probed") == 1       # one state at a time
    for p in ("critical", "high", "normal", "low", "best-effort"):
        assert ("a3s_gateway_priority_shed_total", frozenset({("priority", p)})) in s
        assert ("a3s_gateway_priority_queue_depth", frozenset({("service", "llm"), ("priority", p)})) in s
    assert value(s, "a3s_gateway_priority_inflight_requests", service="llm") == 0
    llm.set_health("busy")
    wait_until(lambda: value(scrape(g), "a3s_gateway_backend_agent_state", service="probed", state="busy") == 1,
               what="busy probe state")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: install Debian's prometheus package "
                    "(.ci/install-deps does)")
def test_promtool_check_metrics_passes_with_the_new_families(env):
    g, _ = env
    assert _get(g, "/auth/x").status_code == 401
    _get(g, "/redis")
    wait_until(lambda: value(scrape(g), "a3s_gateway_middleware_rejections_total") >= 1, what="a rejection")
    text = scrape_text(g).text
    for family in ("middleware_rejections_total", "rate_limit_redis_fail_open_total", "privacy_requests_total",
                   "llm_tokens_total", "priority_queue_depth", "backend_agent_state"):
        assert "a3s_gateway_" + family in text
    r = subprocess.run(["promtool", "check", "metrics"], check=False, input=text, capture_output=True, timeout=30,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
