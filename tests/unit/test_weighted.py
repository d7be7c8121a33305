"""worker/services/weighted.py without processes: the smooth WRR ring, passing over children that cannot serve."""

from __future__ import annotations

from collections import Counter

from a3s_gateway.worker.services.weighted import SCHEDULE_MAX, Weighted, schedule


class Node:
    """A child that serves (returns a pick naming itself) while ``up``."""

    def __init__(self, name: str) -> None:
        self.name, self.up, self.kind = name, True, "fake"   # ``kind`` set: picked through ``pick`` itself

    def pick(self, headers, now):  # type: ignore[no-untyped-def]
        return (self.name, None, ()) if self.up else None


def names(w: Weighted, n: int) -> str:
    return "".join(p[0] if p else "-" for p in (w.pick(None, 0.0) for _ in range(n)))


def test_schedule_is_smooth_and_divides_weights_by_their_gcd() -> None:
    assert schedule([3, 1]) == [0, 0, 1, 0]
    assert schedule([1, 1, 2]) == [2, 0, 1, 2]
    assert schedule([300, 100]) == [0, 0, 1, 0]


def test_schedule_scales_huge_weight_sums_down_keeping_the_shares() -> None:
    ring = schedule([1_000_000, 1_000_001])
    assert len(ring) <= SCHEDULE_MAX
    shares = Counter(ring)
    assert abs(shares[0] - shares[1]) <= 1


def test_weight_zero_children_are_dropped_and_all_zero_picks_nothing() -> None:
    a, b = Node("a"), Node("b")
    assert names(Weighted([("a", a, 0), ("b", b, 1)], None), 3) == "bbb"
    assert names(Weighted([("a", a, 0)], None), 2) == "--"


def test_a_child_that_cannot_serve_is_passed_over_and_its_siblings_keep_their_ratio() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    w = Weighted([("a", a, 1), ("b", b, 1), ("c", c, 2)], None)
    assert names(w, 8) == "cabccabc"
    b.up = False
    seen = Counter(names(w, 300))
    assert seen["b"] == 0 and seen["a"] + seen["c"] == 300 and abs(seen["c"] - 2 * seen["a"]) <= 3
    a.up = c.up = False
    assert names(w, 2) == "--"
    b.up = True
    assert names(w, 2) == "bb"
