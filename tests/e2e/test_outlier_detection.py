"""Outlier detection and the panic threshold through the real binary, 2 workers, in front of loopback backends
whose answers and health a test switches (``Switchable``)."""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import BINARY, wait_until
from obs_util import scrape, value
from test_weighted import HEAD, spread


class Switchable:
    """An HTTP/1.1 keep-alive backend in the test process: ``/`` answers 200 with X-Backend, or 500 while
    ``failing``; ``/health`` answers ``health``. ``hits`` counts the requests to ``/``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failing = False
        self.health = 200
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status = owner.health if self.path == "/health" else 500 if owner.failing else 200
                if self.path != "/health":
                    owner.hits += 1
                body = owner.name.encode()
                self.send_response(status)
                self.send_header("X-Backend", owner.name)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def switchables():
    made: list[Switchable] = []

    def make(*names: str) -> list[Switchable]:
        made.extend(Switchable(n) for n in names)
        return made[-len(names):]

    yield make
    for s in made:
        s.close()


def lb(name: str, servers: list[Switchable], outliers: str = "", health: bool = False) -> str:
    urls = ", ".join(f'{{url = "{s.url}"}}' for s in servers)
    out = f"[services.{name}.load_balancer]\nservers = [{urls}]\n"
    if health:
        out += (f'[services.{name}.load_balancer.health_check]\npath = "/health"\ninterval = "100ms"\n'
                'timeout = "1s"\nunhealthy_threshold = 1\n')
    if outliers:
        out += f"[services.{name}.load_balancer.outlier_detection]\n{outliers}\n"
    return out


def send(g: Any, n: int) -> Counter:
    """``n`` requests over 4 parallel keep-alive connections (so over both workers), by X-Backend (or status)."""
    return spread(g, n, clients=4)


def servers(g: Any, service: str = "top") -> dict[str, dict[str, Any]]:
    """The admin API's servers of a load balancer, by URL."""
    return {s["url"]: s for s in httpx.get(f"{g.admin}/api/services/{service}").json()["servers"]}


def ejected(g: Any, service: str = "top") -> set[str]:
    return {url for url, s in servers(g, service).items() if s["passive"]["down_for_s"] > 0}


def ejections(g: Any, backend: Switchable, reason: str, service: str = "top") -> int:
    return servers(g, service)[backend.url]["passive"]["ejections"][reason]


def drive(g: Any, until: Any, what: str, batch: int = 8, rounds: int = 200) -> None:
    """Send batches of requests until ``until()`` holds (bounded)."""
    for _ in range(rounds):
        if until():
            return
        send(g, batch)
    raise TimeoutError(f"{what} never happened in {rounds} rounds of {batch} requests")


def test_ejection_time_grows_with_each_ejection_up_to_max_ejection_time(gateway, switchables):
    bad, good = switchables("bad", "good")
    bad.failing = True
    od = ('consecutive_5xx = 3\nbase_ejection_time = "200ms"\nmax_ejection_time = "500ms"\ninterval = "1h"\n'
          "max_ejection_percent = 50\nhealthy_panic_threshold = 0\nsuccess_rate.enabled = false")
    g = gateway(HEAD + lb("top", [bad, good], od), workers=2)
    lengths = []
    for k in range(1, 5):
        drive(g, lambda k=k: ejections(g, bad, "consecutive_5xx") >= k, f"ejection {k}")
        state = servers(g)[bad.url]["passive"]
        assert state["ejections"]["consecutive_5xx"] == k and state["ejection_multiplier"] == k
        lengths.append(state["last_ejection_s"])
    assert lengths == [0.2, 0.4, 0.5, 0.5]                 # base × times ejected, capped
    samples = scrape(g)
    assert value(samples, "a3s_gateway_outlier_ejections_total", service="top", reason="consecutive_5xx") == 4
    assert value(samples, "a3s_gateway_outlier_ejections_total", reason="success_rate") == 0


def test_max_ejection_percent_holds_across_workers_and_reloads_keep_ejections(gateway, switchables):
    pool = switchables("b1", "b2", "b3", "ok1", "ok2")
    lone = switchables("lone")[0]
    for s in (*pool[:3], lone):
        s.failing = True
    od = ('consecutive_5xx = 2\nbase_ejection_time = "1h"\nmax_ejection_percent = 40\n'
          "healthy_panic_threshold = 0\nsuccess_rate.enabled = false")
    lone_router = '[routers.lone]\nservice = "lone"\nrule = "PathPrefix(`/lone`)"\n'
    config = HEAD + lone_router + lb("top", pool, od) + lb("lone", [lone], "consecutive_5xx = 1")
    g = gateway(config, workers=2)
    drive(g, lambda: len(ejected(g)) >= 2, "two ejections")
    out = ejected(g)
    assert len(out) == 2 and out <= {s.url for s in pool[:3]}
    still_in = next(s for s in pool[:3] if s.url not in out)
    seen = send(g, 60)
    assert seen[still_in.name] > 0                         # 40 % of 5: the third bad one stays in
    assert ejected(g) == out
    for _ in range(10):                                   # a lone backend is never ejected at 10 %
        assert httpx.get(g.url + "/lone").status_code == 500
    assert ejected(g, "lone") == set()
    g.reload(config + '[routers.other]\nservice = "lone"\nrule = "PathPrefix(`/other`)"\n')
    assert ejected(g) == out                               # unchanged backends keep their ejections
    assert value(scrape(g), "a3s_gateway_outlier_ejected", service="top") == 2


def test_success_rate_sweep_ejects_the_one_bad_backend_of_five(gateway, switchables):
    pool = switchables("bad", "a", "b", "c", "d")
    pool[0].failing = True
    od = ('consecutive_5xx = 0\ninterval = "1s"\nbase_ejection_time = "1h"\nmax_ejection_percent = 20\n'
          "healthy_panic_threshold = 0\nsuccess_rate = {minimum_hosts = 5, request_volume = 10}")
    g = gateway(HEAD + lb("top", pool, od), workers=2)
    drive(g, lambda: ejected(g), "a success-rate ejection", batch=40)
    assert ejected(g) == {pool[0].url}
    assert ejections(g, pool[0], "success_rate") == 1
    assert all(ejections(g, s, "success_rate") == 0 for s in pool[1:])
    seen = send(g, 40)
    assert "bad" not in seen and sum(seen.values()) == 40


def test_panic_threshold_spreads_over_all_backends_or_fails_by_mode(gateway, switchables):
    pool = switchables("a", "b", "c", "d")
    od = "consecutive_5xx = 0\nsuccess_rate.enabled = false"
    config = HEAD + lb("top", pool, od, health=True)
    g = gateway(config, workers=2)

    def down(n: int) -> None:
        for i, s in enumerate(pool):
            s.health = 503 if i < n else 200
        wait_until(lambda: sum(s["health"] == "down" for s in servers(g).values()) == n, what=f"{n} down")

    def answered_by(expected: set[str]) -> None:
        """Every worker recomputes its panic state once per clock tick (panic.py): poll, do not race it."""
        wait_until(lambda: set(send(g, 40)) == expected, what=f"answers from {sorted(expected)}")

    down(2)                                                # 50 %: not below the threshold
    answered_by({"c", "d"})
    down(3)                                                # 25 % healthy: panic, all four get traffic
    assert httpx.get(f"{g.admin}/api/services/top").json()["in_panic"] is True
    answered_by({"a", "b", "c", "d"})
    down(4)
    assert set(send(g, 40)) == {"a", "b", "c", "d"}
    g.reload(config.replace(od, od + '\npanic = "fail"'))
    r = httpx.get(g.url + "/")
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
    down(3)
    assert send(g, 20) == Counter({"503": 20})
    down(0)
    answered_by({"a", "b", "c", "d"})


def test_a_load_balancer_in_panic_lets_the_failover_above_it_switch_and_spreads_as_the_last_resort(
        gateway, switchables):
    pool = switchables("a", "b", "c", "d")
    spare = switchables("spare")[0]
    od = "consecutive_5xx = 0\nsuccess_rate.enabled = false"
    failover = '[services.top.failover]\nservice = "main"\nfallback = "spare"\n'
    g = gateway(HEAD + failover + lb("main", pool, od, health=True) + lb("spare", [spare], health=True),
                workers=2)
    assert set(send(g, 40)) == {"a", "b", "c", "d"}
    for s in pool[:3]:
        s.health = 503
    wait_until(lambda: httpx.get(f"{g.admin}/api/services/main").json()["in_panic"], what="main in panic")
    # in panic, main reports itself down (each worker sees it within a clock tick: panic.py)
    wait_until(lambda: send(g, 40) == Counter({"spare": 40}), what="every answer from spare")
    assert value(scrape(g), "a3s_gateway_failover_activations_total", service="top") >= 1
    spare.health = 503
    wait_until(lambda: httpx.get(f"{g.admin}/api/services/spare").json()["health"] == "down", what="spare down")
    wait_until(lambda: set(send(g, 40)) == {"a", "b", "c", "d"}, what="main spreading as the last resort")


def test_passive_health_keys_keep_their_fixed_cooldown(gateway, switchables):
    bad, good = switchables("bad", "good")
    bad.failing = True
    passive = ('[services.top.load_balancer.passive_health]\nmax_failures = 2\ncooldown = "200ms"\n'
               "statuses = [500]\n")
    g = gateway(HEAD + lb("top", [bad, good]) + passive, workers=2)
    for k in (1, 2, 3):
        drive(g, lambda k=k: ejections(g, bad, "passive_health") >= k, f"ejection {k}")
        assert servers(g)[bad.url]["passive"]["last_ejection_s"] == 0.2    # never multiplied
    assert value(scrape(g), "a3s_gateway_outlier_ejections_total", reason="passive_health", service="top") >= 3


def test_bad_outlier_settings_are_reported_with_their_paths(tmp_path: Path):
    bad = tmp_path / "gateway.toml"
    bad.write_text("""
[services.top.load_balancer]
servers = [{url = "http://127.0.0.1:1"}]
passive_health = {max_failures = 3}
[services.top.load_balancer.outlier_detection]
base_ejection_time = "10s"
max_ejection_time = "5s"
max_ejection_percent = 150
interval = 0
panic = "maybe"
success_rate = {stdev_factor = -1}
""")
    r = subprocess.run([*BINARY, "validate", "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    path = "services.top.load_balancer"
    for message in (
        f"{path}.passive_health: outlier_detection replaces passive_health; give only one of them",
        f"{path}.outlier_detection.max_ejection_time: must be at least base_ejection_time (10s), got 5s",
        f"{path}.outlier_detection.max_ejection_percent: must be at most 100, got 150",
        f"{path}.outlier_detection.interval: must be greater than 0",
        f"{path}.outlier_detection.panic:",
        f"{path}.outlier_detection.success_rate.stdev_factor: must be at least 0",
    ):
        assert message in r.stderr, r.stderr
