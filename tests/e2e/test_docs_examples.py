"""Every TOML and YAML config block in ``docs/`` and ``README.md`` passes the real ``a3s-gateway validate`` (a
block of our CRD objects is validated as such).

A block meant as a piece of a config (not valid alone) is marked with ``<!-- fragment -->`` on the line before
its fence, and is skipped. A block marked ``<!-- append: FILE -->`` is validated appended to the last block
marked ``<!-- file: FILE -->`` on the same page (the walkthrough grows its gateway.toml that way). Each block is
validated in a folder holding ``cert.pem``/``key.pem`` (a certificate for localhost) and ``ca.pem``, so TLS
examples can name those files, with the environment variables the examples use set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(toml|yaml|yml)[^\n]*\n(.*?)^```", re.M | re.S)
MARK = re.compile(r"<!--\s*(fragment|file|append)\s*:?\s*([^ ]*?)\s*-->\s*$")
ENV = {"JWT_SECRET": "s3cret-for-docs", "API_KEY": "k-docs", "ADMIN_PASSWORD": "pw", "ADMIN_TOKEN": "t0ken",
       "SLACK_SIGNING_SECRET": "slack-docs"}


@dataclass
class Block:
    page: Path
    line: int
    kind: str          # toml | yaml
    text: str
    mark: str | None   # fragment | file | append
    target: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def config_blocks() -> list[Block]:
    pages = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
    out = []
    for page in pages:
        if "_generated" in page.parts:
            continue
        text = page.read_text()
        for m in FENCE.finditer(text):
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            kind = "yaml" if m.group(1) in ("yaml", "yml") else "toml"
            out.append(Block(page, text.count("\n", 0, m.start()) + 1, kind, m.group(2),
                             mark.group(1) if mark else None, mark.group(2) if mark else ""))
    return out


def checked_configs() -> list[tuple[str, str, str]]:
    """(name, suffix, config text) of every block to validate; appended blocks joined to their file."""
    files: dict[tuple[Path, str], str] = {}
    out = []
    for b in config_blocks():
        if b.mark == "fragment":
            continue
        text = b.text
        if b.mark == "file":
            files[(b.page, b.target)] = text
        elif b.mark == "append":
            text = files[(b.page, b.target)] + "\n" + text
            files[(b.page, b.target)] = text
        out.append((b.name, b.kind, text))
    return out


CONFIGS = checked_configs()


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from certs import CA

    folder = tmp_path_factory.mktemp("docs-examples")
    ca = CA(folder)
    pair = ca.issue("localhost", "example.com")
    pair.cert.rename(folder / "cert.pem")
    pair.key.rename(folder / "key.pem")
    ca.path.rename(folder / "ca.pem")
    return folder


def _validate_command() -> list[str]:
    script = Path(sys.executable).with_name("a3s-gateway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from a3s_gateway.master.cli import main; raise SystemExit(main())"]


def test_the_docs_have_config_examples_to_check() -> None:
    assert len(CONFIGS) > 30
    assert any("README.md" in name for name, _, _ in CONFIGS)


@pytest.mark.parametrize(("name", "kind", "text"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_config_example_passes_validate(name: str, kind: str, text: str, example_dir: Path) -> None:
    config = example_dir / f"example.{kind}"
    config.write_text(text)
    # a Kubernetes object (our Route or Middleware CRD) is checked as the provider would, not as a config file
    objects = kind == "yaml" and re.search(r"^apiVersion: a3s\.io/", text, re.M) is not None
    done = subprocess.run([*_validate_command(), "validate", *([] if objects else ["--config"]), str(config)],
                          cwd=example_dir, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{name}: the example does not validate:\n{done.stdout}{done.stderr}"
