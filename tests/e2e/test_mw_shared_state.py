"""Node-wide middlewares on the shared-memory plane, through the real binary with two workers: rate-limit
(one bucket across workers) and circuit-breaker (open for every worker, one trial, closing again)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from harness import Backend, Gateway, free_port, wait_until
from mw_support import assert_error

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "%(app)s"}]
[services.down.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}]

[middlewares.limit]
type = "rate-limit"
rate = 3
period = "1h"
[middlewares.burst]
type = "rate-limit"
rate = 6
period = "1h"
burst = 2
[middlewares.per-ip]
type = "rate-limit"
rate = 2
period = "1h"
key = "header:X-Tenant"
[middlewares.cb]
type = "circuit-breaker"
failure_threshold = 3
cooldown_secs = "1s"
[middlewares.cb-down]
type = "circuit-breaker"
failure_threshold = 2
cooldown_secs = "1h"
[middlewares.strip]
type = "strip-prefix"
prefixes = ["/cb"]

[routers.limited]
rule = "PathPrefix(`/limited`)"
service = "app"
middlewares = ["limit"]
[routers.burst]
rule = "PathPrefix(`/burst`)"
service = "app"
middlewares = ["burst"]
[routers.tenant]
rule = "PathPrefix(`/tenant`)"
service = "app"
middlewares = ["per-ip"]
[routers.cb]
rule = "PathPrefix(`/cb`)"
service = "app"
middlewares = ["cb", "strip"]
[routers.cb-down]
rule = "PathPrefix(`/down`)"
service = "down"
middlewares = ["cb-down"]
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    app = Backend("app")
    g = Gateway(CONFIG % {"app": app.url, "dead": free_port()}, tmp_path_factory.mktemp("state"), workers=2)
    yield g
    g.stop()
    app.stop()


def fresh(gw: Gateway, path: str, **kw: object) -> httpx.Response:
    """One request on a new connection, so successive requests land on either worker."""
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        return c.get(path, headers={"Connection": "close", **kw.pop("headers", {})}, **kw)  # type: ignore[arg-type]


def test_rate_limit_is_one_bucket_across_workers(gw: Gateway) -> None:
    statuses = [fresh(gw, "/limited").status_code for _ in range(12)]
    assert statuses == [200] * 3 + [429] * 9
    r = fresh(gw, "/limited")
    assert_error(r, 429, {"error": "Rate limit exceeded"})
    assert 1000 <= int(r.headers["retry-after"]) <= 1200      # a token per 20 minutes


def test_rate_limit_429_carries_the_ietf_ratelimit_fields_stating_the_rate_not_the_burst(gw: Gateway) -> None:
    assert [fresh(gw, "/burst").status_code for _ in range(3)] == [200, 200, 429]
    r = fresh(gw, "/burst")
    assert r.headers["ratelimit-policy"] == '"burst";q=6;w=3600'         # 6 per hour; the burst of 2 is not the limit
    assert r.headers["ratelimit"] == f'"burst";r=0;t={r.headers["retry-after"]}'
    assert 1 <= int(r.headers["retry-after"]) <= 600
    assert not [h for h in r.headers if h.startswith("x-ratelimit")]


def test_rate_limit_keyed_by_header_has_a_bucket_per_value(gw: Gateway) -> None:
    def status(tenant: str) -> int:
        return fresh(gw, "/tenant", headers={"X-Tenant": tenant}).status_code

    assert [status("a") for _ in range(3)] == [200, 200, 429]
    assert [status("b") for _ in range(3)] == [200, 200, 429]


def test_breaker_opens_on_gateway_made_502s_for_every_worker(gw: Gateway) -> None:
    assert [fresh(gw, "/down").status_code for _ in range(2)] == [502, 502]
    for _ in range(6):
        assert_error(fresh(gw, "/down"), 503, {"error": "Service unavailable (circuit breaker open)"})


def test_breaker_half_open_trial_closes_it_again(gw: Gateway) -> None:
    assert [fresh(gw, "/cb/status/500").status_code for _ in range(3)] == [500] * 3
    assert_error(fresh(gw, "/cb/status/200"), 503, {"error": "Service unavailable (circuit breaker open)"})
    # after the cooldown one trial goes through; a success closes the breaker for everyone
    wait_until(lambda: fresh(gw, "/cb/status/200").status_code == 200, timeout=5, what="trial admitted")
    assert {fresh(gw, "/cb/x").status_code for _ in range(6)} == {200}
