"""Every complete config example in the manual (a ```toml block with an entrypoint) is a valid config.

Files an example names (certificates, keys) are not on this machine: only their "does not exist" problems are
forgiven, so an example with a misspelt key or a wrong value fails here before a reader copies it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from a3s_gateway.shared.config import ConfigError, GatewayConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```toml\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        if "_generated" in page.parts:
            continue
        for n, block in enumerate(BLOCK.findall(page.read_text())):
            if "[entrypoints." in block:
                out.append((f"{page.relative_to(DOCS)}#{n}", block))
    return out


def test_the_manual_has_complete_examples() -> None:
    assert len(examples()) >= 10


@pytest.mark.parametrize(("where", "text"), examples(), ids=[w for w, _ in examples()])
def test_every_complete_example_in_the_manual_is_a_valid_config(where: str, text: str) -> None:
    try:
        GatewayConfig.from_dict(tomllib.loads(text), source=where)
    except ConfigError as e:
        problems = [str(p) for p in e.problems if not str(p).endswith("does not exist")]
        assert problems == []
