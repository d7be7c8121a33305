"""The in-memory hot-path tools (loadtest/hotpath.py, hotpath_h2.py) still run as scripts from any folder, with
their in-memory worker imported from tests/support/inmemory.py, and print their one-line figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.inmemory import ROOT


@pytest.mark.parametrize(("script", "line"), [
    ("hotpath.py", r"^plain: [0-9.]+ µs of Python per proxied request \(300 requests\)$"),
    ("hotpath_h2.py", r"^plain h2 -m10: [0-9.]+ µs of Python per proxied stream \(300 streams\)$"),
])
def test_hotpath_script_runs_outside_the_repo_and_prints_its_figure(tmp_path: Path, script: str, line: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "loadtest" / script), "plain", "--requests", "300"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.match(line, done.stdout.strip()), done.stdout
