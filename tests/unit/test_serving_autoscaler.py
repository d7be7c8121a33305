"""The KPA decider (master/serving/autoscaler.py), table-driven with a fake clock: each case feeds samples of
node-wide concurrency at given times and checks the decision at a given time with a given ready count."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from a3s_gateway.master.serving.autoscaler import Decider, Settings

BASE = Settings(target=10.0, stable_window=60.0, panic_window=6.0, panic_threshold=2.0, max_scale_up_rate=1000.0,
                max_scale_down_rate=2.0, scale_down_delay=0.0, scale_to_zero_grace=30.0, min_scale=0, max_scale=100,
                initial_scale=1, activation_scale=1)


def steady(value: float, start: float, end: float) -> list[tuple[float, float]]:
    """One sample every 0.5 s from ``start`` to ``end`` (exclusive)."""
    out, t = [], start
    while t < end:
        out.append((t, value))
        t += 0.5
    return out


def run(samples: list[tuple[float, float]], at: float, ready: int, current: int = 0, **settings: Any):
    decider = Decider(replace(BASE, **settings), 0.0, current)
    for t, value in samples:
        decider.record(t, value)
    return decider, decider.decide(at, ready)


CASES = [
    # name, samples, decide at, ready, settings, desired, panicking
    ("steady load at target", steady(20, 0, 60), 60, 2, {}, 2, False),
    ("more load scales up in the stable window", steady(40, 0, 60), 60, 2, {}, 4, True),
    ("a young revision is not under-estimated", steady(30, 0, 3), 3, 3, {}, 3, False),
    ("a burst over the panic threshold panics", steady(0, 0, 54) + steady(50, 54, 60), 60, 1, {}, 5, True),
    ("the scale-up rate caps one decision", steady(100, 0, 60), 60, 1, {"max_scale_up_rate": 2.0}, 2, True),
    ("the scale-down rate caps one decision", steady(10, 0, 60), 60, 10, {}, 5, False),
    ("activation scale is the least count from zero", steady(1, 0, 60), 60, 0, {"activation_scale": 3}, 3, False),
    ("max_scale bounds", steady(1000, 0, 60), 60, 5, {"max_scale": 7}, 7, True),
    ("min_scale bounds", steady(0, 0, 200), 200, 1, {"min_scale": 2}, 2, False),
    ("idle within stable window + grace keeps one", steady(0, 0, 80), 80, 1, {}, 1, False),
    ("idle past stable window + grace goes to zero", steady(0, 0, 95), 95, 1, {}, 0, False),
    ("a short grace goes to zero sooner", steady(0, 0, 62), 62, 1, {"scale_to_zero_grace": 1.0}, 0, False),
]


@pytest.mark.parametrize(("samples", "at", "ready", "settings", "desired", "panicking"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision(samples, at, ready, settings, desired, panicking) -> None:
    _, decision = run(samples, at, ready, **settings)
    assert (decision.desired, decision.panicking) == (desired, panicking), decision.reason


def test_no_data_leaves_the_scale_unchanged() -> None:
    decision = Decider(BASE, 0.0).decide(2.0, 3)
    assert decision.desired == -1


def test_panic_never_scales_down_and_ends_a_stable_window_after_its_last_trigger() -> None:
    decider = Decider(BASE, 0.0)
    for t, v in steady(0, 0, 54) + steady(80, 54, 60):
        decider.record(t, v)
    assert decider.decide(59.5, 1).desired == 8           # 80 / 10 in the panic window
    for t, v in steady(5, 60, 110):
        decider.record(t, v)
    later = decider.decide(109.5, 8)
    assert later.panicking and later.desired == 8       # the load fell, the panic maximum holds
    for t, v in steady(5, 110, 125):
        decider.record(t, v)
    over = decider.decide(124.5, 8)                       # 65 s after the last trigger
    assert not over.panicking and over.desired < 8


def test_scale_down_delay_holds_the_maximum_over_the_delay() -> None:
    settings = replace(BASE, scale_down_delay=10.0)
    decider = Decider(settings, 0.0)
    for t, v in steady(40, 0, 60):
        decider.record(t, v)
    assert decider.decide(60, 4).desired == 4
    for t, v in steady(0, 60, 64):
        decider.record(t, v)
    assert decider.decide(64, 4).desired == 4           # within the delay: held
    for t, v in steady(0, 64, 200):
        decider.record(t, v)
    decider.decide(190, 4)
    assert decider.decide(200, 4).desired < 4


def test_a_restart_with_running_instances_does_not_scale_down() -> None:
    decider = Decider(BASE, 0.0, current=5)
    for t, v in steady(0, 0, 10):
        decider.record(t, v)
    decision = decider.decide(10, 5)
    assert decision.panicking and decision.desired == 5


def test_the_poke_wakes_with_the_activation_scale_within_bounds() -> None:
    assert Decider(replace(BASE, activation_scale=3), 0.0).wake(1.0) == 3
    assert Decider(replace(BASE, activation_scale=3, max_scale=2), 0.0).wake(1.0) == 2


def test_settings_resolve_the_target_like_knative() -> None:
    serving = {"target": None, "target_utilization": 0.7, "stable_window": 60.0, "panic_window_percentage": 10.0,
               "panic_threshold_percentage": 200.0, "max_scale_up_rate": 1000.0, "max_scale_down_rate": 2.0,
               "scale_down_delay": 0.0, "scale_to_zero_grace": 30.0}
    revision = {"container_concurrency": 0, "min_scale": 0, "max_scale": 10, "initial_scale": 1,
                "activation_scale": 1}
    assert Settings.of(serving, revision).target == pytest.approx(70.0)
    assert Settings.of(serving, {**revision, "container_concurrency": 10}).target == pytest.approx(7.0)
    assert Settings.of({**serving, "target": 50.0}, {**revision, "container_concurrency": 10}).target == 10.0
    assert Settings.of(serving, revision).panic_window == 6.0


def test_an_instance_still_starting_is_not_scaled_away_within_the_grace() -> None:
    decider, decision = run(steady(0, 0, 5), 5, ready=0)
    assert decision.desired == 0                       # nothing asked for, nothing kept
    assert decider.decide(5, 0, wanted=1).desired == 1
