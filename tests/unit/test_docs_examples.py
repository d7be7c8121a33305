"""Every complete config example in the manual (a ```toml block with an entrypoint) is a valid config.

Files an example names (certificates, keys) are not on this machine: they are made in a scratch directory the
example is checked from (a test CA's certificate and key, by the file's name), so an example with a misspelt key or
a wrong value fails here before a reader copies it, and the checks that read the files still run.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from a3s_gateway.shared.config import ConfigError, GatewayConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from certs import CA  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```toml\n(.*?)```", re.S)
MISSING = re.compile(r"file '([^']+)' does not exist$")


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
def test_every_complete_example_in_the_manual_is_a_valid_config(where: str, text: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pair = CA(tmp_path / "ca").issue("example.com")
    data = tomllib.loads(text)
    try:
        GatewayConfig.from_dict(data, source=where)
        return
    except ConfigError as e:
        missing = [m.group(1) for p in e.problems if (m := MISSING.search(str(p)))]
    for name in missing:                  # made, then the whole example is checked again
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((pair.key if "key" in path.name else pair.cert).read_bytes())
    try:
        GatewayConfig.from_dict(data, source=where)
    except ConfigError as e:
        assert [str(p) for p in e.problems] == []
