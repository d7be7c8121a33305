"""A node's share of a cluster-wide decision (master/serving/coordinator.py): split over the nodes for executors
whose instances each node runs, whole for shared ones; the revision's bounds hold per node."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from a3s_gateway.master.serving.coordinator import Coordinator


def rev(shared: bool, min_scale: int = 0, max_scale: int = 10) -> SimpleNamespace:
    settings = SimpleNamespace(min_scale=min_scale, max_scale=max_scale)
    return SimpleNamespace(executor=SimpleNamespace(shared=shared), decider=SimpleNamespace(settings=settings))


@pytest.mark.parametrize(("desired", "nodes", "bounds", "share"), [
    (7, 3, (0, 10), 3),       # ceil(7 / 3)
    (6, 2, (0, 10), 3),
    (0, 2, (0, 10), 0),       # scale to zero everywhere
    (1, 3, (0, 10), 1),       # one instance wanted: every node keeps one, so none cold-starts its traffic
    (2, 4, (1, 10), 1),
    (40, 2, (0, 10), 10),     # max_scale bounds each node
    (0, 2, (2, 10), 2),       # and so does min_scale
])
def test_a_node_local_executor_runs_its_share(desired, nodes, bounds, share) -> None:
    assert Coordinator.share(rev(False, *bounds), desired, nodes) == share


def test_a_shared_executor_runs_the_whole_decision() -> None:
    assert Coordinator.share(rev(True), 7, 3) == 7
