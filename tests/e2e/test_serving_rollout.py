"""Gradual rollout end to end: the real binary with 2 workers moves a served service's traffic from v1 to v2 (both
run by the ``process`` executor from ``serving_instance.py``) in steps shrunk to about a second by config, each
judged on v2's answers during the step, as ``/api/serving`` and the log show."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter, defaultdict
from typing import Any

from harness import Gateway, wait_until
from test_serving import config, get, revision, serving


def rollout_line(**keys: Any) -> str:
    settings = {"from": "v1", "to": "v2", "step_interval": "1s", "min_requests": 8, **keys}
    return "rollout = {" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()) + "}"


def rollout(g: Gateway) -> dict[str, Any]:
    with urllib.request.urlopen(g.admin + "/api/serving", timeout=2) as r:
        return json.loads(r.read())["fn"]["rollout"]


def start(gateway: Any, v2_args: str = "", **keys: Any) -> Gateway:
    g = gateway(config(revision("v1", min_scale=1), revision("v2", min_scale=1, args=v2_args, ready_path="/healthz"),
                       traffic=rollout_line(**keys)), workers=2)
    wait_until(lambda: all(r["ready"] == 1 for r in serving(g).values()), what="both revisions ready")
    return g


def names(g: Gateway, n: int) -> list[str]:
    return [body["name"] for _, _, body in (get(g) for _ in range(n))]


def drive(g: Gateway, until: Any, timeout: float = 60.0) -> dict[int, Counter]:
    """Send batches of requests until ``until(rollout)``; the revisions that answered each batch, by the rollout's
    percent when the batch began and ended the same (a batch across a step is left out)."""
    seen: dict[int, Counter] = defaultdict(Counter)
    deadline = time.monotonic() + timeout
    while not until(state := rollout(g)):
        assert time.monotonic() < deadline, f"rollout did not get there within {timeout}s: {state}"
        batch = names(g, 16)
        if rollout(g)["percent"] == state["percent"]:
            seen[state["percent"]].update(batch)
    return seen


def test_a_rollout_promotes_a_healthy_revision_step_by_step(gateway) -> None:
    g = start(gateway, step_percent=25)
    assert rollout(g)["state"] == "progressing"
    seen = drive(g, lambda r: r["state"] != "progressing")
    done = rollout(g)
    assert (done["state"], done["percent"], done["split"]) == ("promoted", 100, {"v1": 0, "v2": 100})
    assert done["reason"] == "v2 takes all traffic"
    assert [(s["percent"], s["verdict"]) for s in done["steps"]] == [
        (25, "healthy: v2 to 50%"), (50, "healthy: v2 to 75%"), (75, "healthy: v2 to 100%")]
    assert all(s["requests"] >= 8 and s["error_rate"] == 0 for s in done["steps"])
    share = {p: c["v2"] / sum(c.values()) for p, c in seen.items() if sum(c.values()) >= 16}
    assert 25 in share and 75 in share, share
    assert share[25] < share[75]
    assert [share[p] for p in sorted(share)] == sorted(share.values())       # a rising share, step by step
    wait_until(lambda: set(names(g, 8)) == {"v2"}, what="all traffic on v2")
    assert "rollout step healthy: v2 to 100%" in g.logs() and "promoted: v2 takes all traffic" in g.logs()


def test_a_rollout_of_a_revision_answering_500_rolls_all_traffic_back(gateway) -> None:
    g = start(gateway, v2_args="--status 500", step_percent=25, max_error_rate=0.1)
    drive(g, lambda r: r["state"] != "progressing")
    done = rollout(g)
    assert (done["state"], done["percent"], done["split"]) == ("rolled_back", 0, {"v1": 100, "v2": 0})
    assert done["reason"] == "error rate 100.0% > max_error_rate 10.0% at 25%: all traffic back to v1"
    assert [s["verdict"] for s in done["steps"]] == ["rolled back: error rate 100.0% > max_error_rate 10.0%"]
    wait_until(lambda: set(names(g, 8)) == {"v1"}, what="all traffic back on v1")
    with urllib.request.urlopen(g.admin + "/api/gateway/metrics", timeout=2) as r:
        metrics = r.read().decode()
    assert 'a3s_gateway_serving_rollout_percent{revision="v1",service="fn"} 100.0' in metrics
    assert 'a3s_gateway_serving_rollout_percent{revision="v2",service="fn"} 0.0' in metrics
    assert all(get(g)[0] == 200 for _ in range(8))
    assert f"serving fn: rollout {done['reason']}" in g.logs()
    assert rollout(g) == done                # a finished rollout never moves again


def test_a_reload_that_keeps_the_rollout_keeps_its_progress(gateway) -> None:
    text = config(revision("v1", min_scale=1), revision("v2", min_scale=1),
                  traffic=rollout_line(step_percent=10))
    g = gateway(text, workers=2)
    wait_until(lambda: all(r["ready"] == 1 for r in serving(g).values()), what="both revisions ready")
    drive(g, lambda r: r["percent"] >= 30)
    before = rollout(g)
    g.reload(text.replace('stable_window = "6s"', 'stable_window = "7s"'))
    kept = rollout(g)
    assert kept["state"] == "progressing" and kept["percent"] >= before["percent"] >= 30
    assert kept["steps"][:len(before["steps"])] == before["steps"]
    g.reload(text.replace('step_percent = 10', 'step_percent = 20'))
    again = rollout(g)
    assert (again["state"], again["percent"], again["steps"]) == ("progressing", 20, [])
    assert "rollout removed or changed" in g.logs()
