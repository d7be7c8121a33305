"""The ``weighted`` service kind (a service of services) through the real binary, 2 workers, counting backends."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
from harness import Backend, wait_until

HEAD = """
[routers.all]
service = "top"
rule = "PathPrefix(`/`)"
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
"""                                          # every test names its routed service "top"

DEAD = "http://127.0.0.1:1"                  # nothing listens: a pick of it would answer 502


def lb(name: str, url: str, health: bool = False) -> str:
    check = (f"[services.{name}.load_balancer.health_check]\npath = \"/health\"\ninterval = \"100ms\"\n"
             "timeout = \"1s\"\nunhealthy_threshold = 1\n") if health else ""
    return f'[services.{name}.load_balancer]\nservers = [{{url = "{url}"}}]\n{check}'


def weighted(name: str, *children: tuple[str, int], sticky: str = "") -> str:
    items = ", ".join(f'{{name = "{n}", weight = {w}}}' for n, w in children)
    return f"[services.{name}.weighted]\nservices = [{items}]\n{sticky}"


def client(proto: str = "http1") -> httpx.Client:
    """HTTP/1.1, or h2c (HTTP/2 with prior knowledge): both run the same exchange steps."""
    return httpx.Client(timeout=10) if proto == "http1" else httpx.Client(http1=False, http2=True, timeout=10)


def sequence(g, n: int, proto: str = "http1") -> list[str]:
    """Backends of ``n`` requests on one keep-alive connection, so one worker's picks in order."""
    with client(proto) as c:
        return [c.get(g.url + "/").headers["x-backend"] for _ in range(n)]


def spread(g, n: int, clients: int = 8) -> Counter:
    """``n`` requests over ``clients`` parallel keep-alive connections (so over every worker)."""
    seen: Counter = Counter()
    lock = threading.Lock()

    def run(count: int) -> None:
        local: Counter = Counter()
        with httpx.Client(timeout=10) as c:
            for _ in range(count):
                r = c.get(g.url + "/")
                local[r.headers.get("x-backend", str(r.status_code))] += 1
        with lock:
            seen.update(local)

    threads = [threading.Thread(target=run, args=(n // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return seen


def service_health(g, name: str) -> str:
    return httpx.get(f"{g.admin}/api/services/{name}").json()["health"]


@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_weighted_3_to_1_interleaves_children_in_an_exact_sequence(gateway, backends, proto):
    a, b = backends("a"), backends("b")
    g = gateway(HEAD + weighted("top", ("a", 3), ("b", 1)) + lb("a", a.url) + lb("b", b.url), workers=2)
    assert "".join(x[0] for x in sequence(g, 16, proto)) == "aaba" * 4


def test_weighted_1_1_2_interleaves_and_weight_zero_child_gets_nothing(gateway, backends):
    a, b, c = backends("a"), backends("b"), backends("c")
    config = HEAD + weighted("top", ("a", 1), ("b", 1), ("c", 2), ("off", 0)) + lb("a", a.url) + lb("b", b.url) \
        + lb("c", c.url) + lb("off", DEAD)
    g = gateway(config, workers=2)
    assert "".join(x[0] for x in sequence(g, 20)) == "cabc" * 5


def test_nested_70_30_split_holds_within_2_percent_over_10000_requests_on_all_workers(gateway, backends):
    a, b, c = backends("a"), backends("b"), backends("c")
    config = HEAD + weighted("top", ("inner", 7), ("c", 3)) + weighted("inner", ("a", 1), ("b", 1)) \
        + lb("a", a.url) + lb("b", b.url) + lb("c", c.url)
    g = gateway(config, workers=2)
    seen = spread(g, 10000)
    assert sum(seen.values()) == 10000
    assert abs((seen["a"] + seen["b"]) / 10000 - 0.70) <= 0.02
    assert abs(seen["c"] / 10000 - 0.30) <= 0.02
    assert abs(seen["a"] - seen["b"]) <= 200
    served = sum(httpx.get(x.url + "/stats").json()["requests"] for x in (a, b, c))
    assert served == 10000                  # counted by the backends themselves


def test_child_with_all_servers_down_gives_its_share_to_siblings_and_takes_it_back(gateway, backends):
    a, b, c = backends("a"), backends("b"), backends("c")
    config = HEAD + weighted("top", ("a", 1), ("b", 1), ("c", 2)) \
        + lb("a", a.url, health=True) + lb("b", b.url, health=True) + lb("c", c.url, health=True)
    g = gateway(config, workers=2)
    b.stop()
    wait_until(lambda: service_health(g, "b") == "down", what="child b reported down")
    down = spread(g, 300, clients=3)
    assert down["b"] == 0 and sum(down.values()) == 300 == down["a"] + down["c"]
    assert abs(down["c"] / 300 - 2 / 3) <= 0.05            # the siblings keep their 1:2 ratio
    assert service_health(g, "top") == "up"
    Backend("b", b.port)
    wait_until(lambda: service_health(g, "b") == "up", what="child b back up")
    back = spread(g, 400, clients=4)
    assert abs(back["b"] / 400 - 0.25) <= 0.05


def test_weighted_service_with_no_live_child_answers_503_and_reports_down(gateway, backends):
    config = HEAD + weighted("top", ("inner", 1)) + weighted("inner", ("x", 1), ("y", 1)) \
        + lb("x", DEAD, health=True) + lb("y", DEAD, health=True)
    g = gateway(config, workers=2)
    wait_until(lambda: service_health(g, "x") == "down" and service_health(g, "y") == "down",
               what="both leaves down")
    r = httpx.get(g.url + "/")
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
    view = httpx.get(f"{g.admin}/api/services/top").json()
    assert view["kind"] == "weighted" and view["health"] == "down"
    assert view["services"] == [{"name": "inner", "weight": 1, "health": "down"}]


def test_sticky_cookie_pins_a_client_to_one_child_on_every_worker(gateway, backends):
    a, b = backends("a"), backends("b")
    sticky = '[services.top.weighted.sticky]\ncookie = "lb"\n'
    g = gateway(HEAD + weighted("top", ("a", 1), ("b", 1), sticky=sticky) + lb("a", a.url) + lb("b", b.url),
                workers=2)
    first = httpx.get(g.url + "/")
    cookie = first.cookies["lb"]
    assert "HttpOnly" in first.headers["set-cookie"]
    pinned = {httpx.get(g.url + "/", cookies={"lb": cookie}).headers["x-backend"] for _ in range(20)}
    assert pinned == {first.headers["x-backend"]}
    again = httpx.get(g.url + "/", cookies={"lb": cookie})
    assert "set-cookie" not in again.headers            # a valid pin is not re-sent


def test_reload_changing_weights_keeps_in_flight_request_and_applies_new_split(gateway, backends):
    a, b = backends("a"), backends("b")
    g = gateway(HEAD + weighted("top", ("a", 1), ("b", 0)) + lb("a", a.url) + lb("b", b.url), workers=2)
    slow: list[httpx.Response] = []
    t = threading.Thread(target=lambda: slow.append(httpx.get(g.url + "/delay/1", timeout=10)))
    t.start()
    wait_until(lambda: httpx.get(a.url + "/stats").json()["inflight"] == 1, what="slow request at a")
    g.reload(HEAD + weighted("top", ("a", 0), ("b", 1)) + lb("a", a.url) + lb("b", b.url))
    t.join(10)
    assert slow[0].status_code == 200 and slow[0].headers["x-backend"] == "a"
    assert set(spread(g, 40, clients=4)) == {"b"}


def test_retry_through_a_weighted_service_goes_to_another_child(gateway, backends):
    a = backends("a")
    # 4 clients may retry at once: above the retry budget's default floor of 3 (test_mirroring.py tests the budget)
    retry = '[middlewares.r]\ntype = "retry"\nmax_retries = 2\nretry_interval_ms = 1\nmin_retry_concurrency = 8\n'
    config = HEAD.replace('service = "top"', 'service = "top"\nmiddlewares = ["r"]') + retry \
        + weighted("top", ("dead", 1), ("a", 1)) + lb("dead", DEAD) + lb("a", a.url)
    g = gateway(config, workers=2)
    assert spread(g, 40, clients=4) == {"a": 40}      # every pick of "dead" was retried on "a"


def test_bad_weighted_reference_and_cycle_are_rejected_and_last_good_config_keeps_serving(gateway, backends):
    a = backends("a")
    good = HEAD + weighted("top", ("a", 1)) + lb("a", a.url)
    g = gateway(good, workers=2)
    gen = g.health()["generation"]
    g.reload(HEAD + weighted("top", ("a", 1), ("v3", 1)) + weighted("loop", ("top2", 1))
             + weighted("top2", ("loop", 1)) + lb("a", a.url))
    health = g.health()
    assert health["generation"] == gen and health["last_reload"]["ok"] is False
    errors = "\n".join(str(e) for e in health["last_reload"]["errors"])
    assert "services.top.weighted.services[1].name" in errors and "unknown service 'v3'" in errors
    assert "services form a cycle: loop → top2 → loop" in errors or "top2 → loop → top2" in errors
    assert httpx.get(g.url + "/").headers["x-backend"] == "a"
