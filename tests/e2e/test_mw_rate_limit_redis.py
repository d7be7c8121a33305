"""rate-limit-redis against a real redis-server: one limit across two gateway processes, fail-open while
Redis is down (with one warning), limiting again once Redis is back."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import Backend, Gateway, free_port, port_open, wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed "
                                "(.ci/install-deps installs it)")

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "%(app)s"}]
[middlewares.cluster-limit]
type = "rate-limit-redis"
redis_url = "redis://127.0.0.1:%(redis)d/0"
rate = 5
period = "1h"
timeout_ms = 200
[routers.api]
rule = "PathPrefix(`/`)"
service = "app"
middlewares = ["cluster-limit"]
"""


class Redis:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
        wait_until(lambda: port_open(port), what=f"redis on {port}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Gateway], int, Path]]:
    tmp = tmp_path_factory.mktemp("redis")
    port = free_port()
    redis = Redis(port, tmp)
    app = Backend("app")
    text = CONFIG % {"app": app.url, "redis": port}
    gateways = [Gateway(text, tmp_path_factory.mktemp("gw1")), Gateway(text, tmp_path_factory.mktemp("gw2"))]
    yield gateways, port, tmp
    for g in gateways:
        g.stop()
    app.stop()
    redis.stop()


def get(gw: Gateway, path: str = "/x") -> httpx.Response:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        return c.get(path, headers={"Connection": "close"})


def test_limit_holds_across_two_gateways_then_fails_open_and_recovers(env: tuple[list[Gateway], int, Path]
                                                                      ) -> None:
    (g1, g2), port, tmp = env
    statuses = [get(g).status_code for _ in range(4) for g in (g1, g2)]
    assert sorted(statuses) == [200] * 5 + [429] * 3
    r = get(g1)
    assert (r.status_code, r.json()) == (429, {"error": "Rate limit exceeded (distributed)"})
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-policy"] == '"cluster-limit";q=5;w=3600'
    assert r.headers["ratelimit"] == f'"cluster-limit";r=0;t={r.headers["retry-after"]}'

    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, check=False)
    wait_until(lambda: not port_open(port), what="redis stopped")
    assert {get(g).status_code for _ in range(5) for g in (g1, g2)} == {200}      # fail-open
    assert 1 <= g1.logs().count("unavailable") <= 2            # at most one warning per worker per 10 s

    redis = Redis(port, tmp)   # a fresh, empty Redis: full buckets, limiting resumes by itself
    try:
        wait_until(lambda: get(g1).status_code == 429, timeout=10, what="limiting resumed")
    finally:
        redis.proc.terminate()
