"""Gradual rollout (master/serving/rollout.py) with a fake clock and synthetic samples of the new revision, and how
the controller keeps a rollout across reloads (master/serving/controller.py)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from a3s_gateway.master.serving.controller import Serving
from a3s_gateway.master.serving.revisions import Idle, expand
from a3s_gateway.master.serving.rollout import Rollout, Sample, identity, p99
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.shared.errors import ConfigError
from a3s_gateway.shared.plane.observations import BOUNDS, NB

SETTINGS = {"from": "v1", "to": "v2", "step_percent": 25, "step_interval": 10.0, "max_error_rate": 0.05,
            "max_p99": 0.5, "min_requests": 10}
FAST = BOUNDS.index(0.01)            # the (5 ms, 10 ms] bucket
SLOW = BOUNDS.index(1.0)             # the (0.5 s, 1 s] bucket


def sample(requests: int, failed: int = 0, bucket: int = FAST) -> Sample:
    buckets = [0] * NB
    buckets[bucket] = requests
    return Sample(requests, failed, tuple(buckets))


def rollout(base: Sample | None = None, **settings: Any) -> Rollout:
    return Rollout({**SETTINGS, **settings}, (), 0.0, base or sample(0))


# (name, settings, [(now, cumulative sample, moved, percent after, state after)], reason starts with)
CASES = [
    ("promoted_step_by_step", {}, [
        (10.0, sample(100), True, 50, "progressing"),
        (20.0, sample(200), True, 75, "progressing"),
        (30.0, sample(300), True, 100, "promoted"),
    ], "v2 takes all traffic"),
    ("a_step_that_is_not_over_is_not_judged", {}, [
        (9.9, sample(100, failed=100), False, 25, "progressing"),
        (10.0, sample(100), True, 50, "progressing"),
    ], ""),
    ("error_rate_over_the_limit_rolls_back", {}, [
        (10.0, sample(100, failed=6), True, 0, "rolled_back"),
    ], "error rate 6.0% > max_error_rate 5.0% at 25%: all traffic back to v1"),
    ("error_rate_at_the_limit_is_healthy", {}, [
        (10.0, sample(100, failed=5), True, 50, "progressing"),
    ], ""),
    ("errors_in_a_later_step_roll_back_from_there", {}, [
        (10.0, sample(100), True, 50, "progressing"),
        (20.0, sample(200, failed=50), True, 0, "rolled_back"),
    ], "error rate 50.0% > max_error_rate 5.0% at 50%"),
    ("a_slow_p99_rolls_back", {}, [
        (10.0, sample(100, bucket=SLOW), True, 0, "rolled_back"),
    ], "p99 0.995s > max_p99 0.5s at 25%"),
    ("no_max_p99_does_not_gate_on_latency", {"max_p99": None}, [
        (10.0, sample(100, bucket=NB - 1), True, 50, "progressing"),
    ], ""),
    ("a_step_short_of_min_requests_is_extended", {}, [
        (10.0, sample(9), False, 25, "progressing"),
        (15.0, sample(9, failed=9), False, 25, "progressing"),
        (16.0, sample(20), True, 50, "progressing"),
    ], ""),
    ("step_percent_100_is_judged_once", {"step_percent": 100}, [
        (10.0, sample(100), True, 100, "promoted"),
    ], "v2 takes all traffic"),
    ("steps_do_not_overshoot_100", {"step_percent": 40}, [
        (10.0, sample(100), True, 80, "progressing"),
        (20.0, sample(200), True, 100, "promoted"),
    ], ""),
]


@pytest.mark.parametrize(("settings", "steps", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_rollout_moves_only_on_a_judged_step(settings: dict[str, Any], steps: list[tuple], reason: str) -> None:
    r = rollout(**settings)
    assert r.split() == {"v1": 100 - r.percent, "v2": r.percent}
    for now, cumulative, moved, percent, state in steps:
        assert (r.advance(now, cumulative), r.percent, r.state) == (moved, percent, state)
        assert r.split() == {"v1": 100 - percent, "v2": percent}
    assert r.reason.startswith(reason)
    assert len(r.steps) == sum(moved for _, _, moved, _, _ in steps)


def test_only_the_step_is_judged_not_what_came_before() -> None:
    r = rollout(base=sample(100, failed=100))         # failures before the rollout began do not count
    assert r.advance(10.0, sample(200, failed=100)) and r.percent == 50
    assert r.steps[0] | {"at": 0} == {"at": 0, "percent": 25, "requests": 100, "error_rate": 0.0,
                                      "p99_s": round(p99([0] * FAST + [100] + [0] * (NB - FAST - 1)), 4),
                                      "verdict": "healthy: v2 to 50%"}


def test_an_extended_step_says_why_until_it_is_judged() -> None:
    r = rollout()
    assert not r.advance(10.0, sample(3))
    assert r.as_dict()["waiting"] == "step extended: 3 request(s) to v2, min_requests 10"
    assert r.advance(11.0, sample(30)) and r.as_dict()["waiting"] == ""


@pytest.mark.parametrize("final", [sample(400), sample(100, failed=100)], ids=["promoted", "rolled_back"])
def test_a_finished_rollout_never_moves_again(final: Sample) -> None:
    r = rollout(step_percent=100)
    assert r.advance(10.0, final)
    before = r.as_dict()
    for now, later in [(20.0, sample(500)), (30.0, sample(600, failed=600)), (1e6, sample(10**6))]:
        assert not r.due(now) and not r.advance(now, later)
    assert r.as_dict() == before


def test_p99_interpolates_inside_its_bucket() -> None:
    assert p99([0] * NB) == 0.0
    one = [0] * NB
    one[FAST] = 1
    assert p99(one) == pytest.approx(BOUNDS[FAST - 1] + (BOUNDS[FAST] - BOUNDS[FAST - 1]) * 0.99)
    first = [100] + [0] * (NB - 1)
    assert p99(first) == pytest.approx(BOUNDS[0] * 0.99)
    assert math.isinf(p99([0] * (NB - 1) + [1]))
    mostly_fast = [0] * NB
    mostly_fast[FAST], mostly_fast[SLOW] = 99, 1
    assert p99(mostly_fast) <= BOUNDS[FAST]


BASE = """
[entrypoints.web]
address = "127.0.0.1:8080"
[routers.fn]
rule = "Host(`fn.example`)"
service = "fn"
[services.fn.serving]
stable_window = "60s"
traffic = [{revision = "v1", percent = 100}, {revision = "v3", percent = 0, tag = "next"}]
rollout = {from = "v1", to = "v2", step_percent = 25, step_interval = "10s"}
[services.fn.serving.revisions.v1]
executor = "process"
process = {command = "app --port {port}", ports = "9100-9109"}
[services.fn.serving.revisions.v2]
executor = "process"
process = {command = "app2 --port {port}", ports = "9110-9119"}
[services.fn.serving.revisions.v3]
executor = "process"
process = {command = "app3 --port {port}", ports = "9120-9129"}
"""


def data_of(text: str) -> dict[str, Any]:
    return GatewayConfig.from_toml(text).to_dict()


def test_a_rollout_decides_the_split_and_tags_still_reach_their_revision() -> None:
    data = data_of(BASE)
    expand(data, Idle())
    assert data["services"]["fn"]["weighted"]["services"] == [
        {"name": "fn.v1", "weight": 75}, {"name": "fn.v2", "weight": 25}, {"name": "fn.v3", "weight": 0}]
    assert data["services"]["fn.tag.next"]["weighted"]["services"] == [{"name": "fn.v3", "weight": 1}]
    assert identity(data_of(BASE.replace("rollout = {", "# {"))["services"]["fn"]["serving"]) is None


# (what a reload changes, whether the rollout keeps its progress)
RELOADS = [
    ("nothing", lambda t: t, True),
    ("an autoscaler key", lambda t: t.replace('stable_window = "60s"', 'stable_window = "30s"'), True),
    ("a third revision's command", lambda t: t.replace("app3 --port", "app3b --port"), True),
    ("the step_interval", lambda t: t.replace('step_interval = "10s"', 'step_interval = "20s"'), False),
    ("the new revision's command", lambda t: t.replace("app2 --port", "app2b --port"), False),
    ("the old revision's command", lambda t: t.replace("app --port", "app1 --port"), False),
]


@pytest.mark.parametrize(("change", "keeps"), [r[1:] for r in RELOADS], ids=[r[0] for r in RELOADS])
def test_a_reload_that_keeps_the_rollout_keeps_its_progress(change: Any, keeps: bool) -> None:
    async def run() -> tuple[Serving, list[str], dict[str, Any]]:
        published: list[str] = []

        async def republish(why: str) -> None:
            published.append(why)

        serving = Serving(None, republish)  # type: ignore[arg-type]  # no slots yet: the plane is not read
        serving._configure_rollouts(data_of(BASE), 0.0)
        await asyncio.sleep(0)
        assert published == ["serving: instances changed"]
        assert serving.rollouts["fn"].advance(10.0, sample(100)) and serving.rollouts["fn"].percent == 50
        reloaded = data_of(change(BASE))
        before = serving.split("fn", reloaded["services"]["fn"]["serving"])   # compiled before configure
        serving._configure_rollouts(reloaded, 12.0)
        await asyncio.sleep(0)
        return serving, published[1:], before

    serving, published, before = asyncio.run(run())
    r = serving.rollouts["fn"]
    if keeps:
        assert (before, r.percent, len(r.steps), published) == ({"v1": 50, "v2": 50}, 50, 1, [])
    else:       # started over, and published at once (the generation compiled before had its first split)
        assert (before, r.percent, r.steps, r.started, len(published)) == ({"v1": 75, "v2": 25}, 25, [], 12.0, 1)


def test_removing_the_rollout_gives_the_split_back_to_traffic() -> None:
    async def run() -> Serving:
        async def republish(why: str) -> None:
            pass

        serving = Serving(None, republish)  # type: ignore[arg-type]
        serving._configure_rollouts(data_of(BASE), 0.0)
        serving._configure_rollouts(data_of(BASE.replace("rollout = {", "# {")), 1.0)
        await asyncio.sleep(0)
        return serving

    serving = asyncio.run(run())
    assert serving.rollouts == {}
    assert serving.split("fn", data_of(BASE.replace("rollout = {", "# {"))["services"]["fn"]["serving"]) is None


def problems_of(rollout: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        GatewayConfig.from_toml(BASE.replace('rollout = {from = "v1", to = "v2", step_percent = 25, step_interval = '
                                             '"10s"}', f"rollout = {rollout}"))
    return {p.path: p.message for p in e.value.problems}


P = "services.fn.serving.rollout"
BAD = [
    ('{from = "v1", to = "v9"}', {f"{P}.to": "unknown revision 'v9' (defined: v1, v2, v3, or 'latest')"}),
    ('{from = "v3", to = "latest"}', {f"{P}.to": "must differ from rollout.from ('v3')"}),
    ('{to = "v2"}', {f"{P}.from": "required key is missing"}),
    ('{from = "v1", to = "v2", step_percent = 0, step_interval = "0s", max_error_rate = 1.5, min_requests = 0}',
     {f"{P}.step_percent": "must be at least 1, got 0", f"{P}.step_interval": "must be greater than 0",
      f"{P}.max_error_rate": "must be at most 1, got 1.5", f"{P}.min_requests": "must be at least 1, got 0"}),
    ('{from = "v1", to = "v2", step_percent = 101, max_p99 = "0s"}',
     {f"{P}.step_percent": "must be at most 100, got 101", f"{P}.max_p99": "must be greater than 0"}),
    ('{from = "v1", to = "v2", steps = 3}', {f"{P}.steps": "unknown key 'steps'"}),
]


@pytest.mark.parametrize(("rollout", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_rollout_settings_are_rejected_with_their_paths(rollout: str, expected: dict[str, str]) -> None:
    assert problems_of(rollout) == expected


def test_rollout_defaults_and_latest() -> None:
    serving = GatewayConfig.from_toml(BASE.replace('to = "v2", step_percent = 25, step_interval = "10s"',
                                                   'to = "latest"')).services["fn"]["serving"]
    assert serving["rollout"] == {"from": "v1", "to": "v3", "step_percent": 10, "step_interval": 30.0,
                                  "max_error_rate": 0.01, "max_p99": None, "min_requests": 10}
