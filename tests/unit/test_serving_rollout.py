"""Gradual rollout (master/serving/rollout.py) with a fake clock and synthetic samples of the new revision."""

from __future__ import annotations

import math

from a3s_gateway.master.serving.rollout import Rollout, Sample, p99
from a3s_gateway.shared.plane.observations import BOUNDS, NB

SETTINGS = {"from": "v1", "to": "v2", "step_percent": 25, "step_interval": 10.0, "max_error_rate": 0.05,
            "max_p99": 0.5, "min_requests": 10}
FAST = (0,) * 4 + (1,) + (0,) * (NB - 5)          # one answer in the 10 ms bucket


def sample(requests: int, failed: int = 0, bucket: int = 4) -> Sample:
    buckets = [0] * NB
    buckets[bucket] = requests
    return Sample(requests, failed, tuple(buckets))


def test_a_healthy_revision_is_promoted_step_by_step() -> None:
    r = Rollout(SETTINGS, 0.0, sample(0))
    seen = [r.split()["v2"]]
    for step in range(1, 4):
        assert r.advance(step * 10.0, sample(step * 100))
        seen.append(r.split()["v2"])
    assert seen == [25, 50, 75, 100]
    assert r.state == "promoted" and r.split() == {"v1": 0, "v2": 100}
    assert not r.advance(100.0, sample(1000, 1000))       # finished: never moves again


def test_errors_over_the_limit_roll_all_traffic_back_with_the_reason() -> None:
    r = Rollout(SETTINGS, 0.0, sample(0))
    assert r.advance(10.0, sample(100, failed=6))
    assert r.state == "rolled_back" and r.split() == {"v1": 100, "v2": 0}
    assert r.reason == "error rate 6.0% > max_error_rate 5.0% at 25%"


def test_a_slow_p99_rolls_back() -> None:
    r = Rollout(SETTINGS, 0.0, sample(0))
    assert r.advance(10.0, sample(100, bucket=BOUNDS.index(1.0)))
    assert r.state == "rolled_back" and r.reason.startswith("p99 1s > max_p99 0.5s")


def test_only_the_step_is_judged_and_a_quiet_step_is_extended() -> None:
    r = Rollout(SETTINGS, 0.0, sample(100, failed=100))   # failures before the rollout do not count
    assert not r.advance(5.0, sample(200, failed=100))    # the step is not over
    assert not r.advance(10.0, sample(105, failed=100))   # 5 requests < min_requests: the step goes on
    assert r.advance(20.0, sample(200, failed=100)) and r.split()["v2"] == 50


def test_p99_reads_the_bucket_of_the_99th_percentile() -> None:
    assert p99([0] * NB) == 0.0
    assert p99(list(FAST)) == BOUNDS[4]
    assert math.isinf(p99([0] * (NB - 1) + [1]))
