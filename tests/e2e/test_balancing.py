"""Load-balancing strategies through the real binary (1 worker so one balancer sees every request)."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from harness import one_service


def sequence(g, n: int) -> list[str]:
    with httpx.Client() as c:
        return [c.get(g.url + "/").headers["x-backend"] for _ in range(n)]


@pytest.fixture
def two(backends):
    return backends("a"), backends("b")


def test_round_robin_alternates(gateway, two):
    a, b = two
    g = gateway(one_service(a.url, b.url), workers=1)
    seq = sequence(g, 20)
    assert Counter(seq) == {"a": 10, "b": 10}
    assert all(x != y for x, y in zip(seq, seq[1:]))


def test_weighted_3_to_1_is_75_percent_and_interleaved(gateway, two):
    a, b = two
    g = gateway(one_service(a.url, b.url, strategy="weighted", weights=[3, 1]), workers=1)
    seq = sequence(g, 200)
    share = seq.count("a") / len(seq)
    assert 0.70 <= share <= 0.80
    # smooth weighted round-robin: never more than 3 a's in a row and b recurs every 4
    runs = "".join(seq).split("b")
    assert max(len(r) for r in runs) <= 3
    assert all(seq[i : i + 4].count("b") == 1 for i in range(0, 196, 4))


def test_weighted_across_workers_keeps_ratio(gateway, two):
    a, b = two
    g = gateway(one_service(a.url, b.url, strategy="weighted", weights=[3, 1]), workers=2)
    seq = []
    for _ in range(200):  # a new connection each time: spread over both workers
        seq.append(httpx.get(g.url + "/").headers["x-backend"])
    assert 0.70 <= seq.count("a") / len(seq) <= 0.80


def test_random_uses_every_backend_roughly_evenly(gateway, two):
    a, b = two
    g = gateway(one_service(a.url, b.url, strategy="random"), workers=1)
    counts = Counter(sequence(g, 400))
    assert 150 <= counts["a"] <= 250 and 150 <= counts["b"] <= 250
    seq = sequence(g, 40)
    assert any(x == y for x, y in zip(seq, seq[1:]))  # not a strict alternation


def test_least_connections_avoids_the_busy_backend(gateway, two):
    a, b = two
    g = gateway(one_service(a.url, b.url, strategy="least-connections"), workers=1)
    import threading

    held = []

    def hold():
        try:
            held.append(httpx.get(g.url + "/delay/3", timeout=10).headers["x-backend"])
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=hold)
    t.start()
    from harness import wait_until

    busy = wait_until(
        lambda: next((x.name for x in (a, b) if httpx.get(x.url + "/stats").json()["inflight"] > 0), None),
        what="a backend holding the slow request",
    )
    free = "b" if busy == "a" else "a"
    seq = sequence(g, 10)
    assert seq == [free] * 10
    t.join()


def test_weight_zero_everywhere_is_503(gateway, two):
    a, b = two
    g = gateway(one_service(a.url, strategy="weighted", weights=[0]), workers=1)
    r = httpx.get(g.url + "/")
    assert r.status_code == 503
    assert r.json() == {"error": "No healthy backends"}
