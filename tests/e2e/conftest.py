"""Fixtures: real backends and real gateways, cleaned up after each test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Backend, Gateway  # noqa: E402
from stores import Dockerd  # noqa: E402


@pytest.fixture
def backends() -> Iterator[Callable[..., Backend]]:
    started: list[Backend] = []

    def start(name: str = "backend", port: int | None = None) -> Backend:
        b = Backend(name, port)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(config: str, **kwargs: object) -> Gateway:
        g = Gateway(config, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A real dockerd with the busybox image, shared by a module's tests (the Docker provider's, the executor's)."""
    d = Dockerd(tmp_path_factory.mktemp("dockerd"))
    d.start()
    yield d
    d.stop()
