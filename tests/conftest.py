"""Puts ``tests/`` on ``sys.path`` so every test can ``import support`` (tests/support/), whatever the import
mode (pytest runs with ``--import-mode=importlib``, which adds no test folder to the path by itself).

In a source checkout it also rebuilds compiled hot-path modules (``a3s_gateway/extensions.py``) older than their
``.py`` or ``.pxd``: an extension beside its source wins at import, so a stale one would test yesterday's code. Only
extensions already built are checked; a pure checkout stays pure (``A3S_GATEWAY_NO_EXTENSIONS=1`` runs the suite
pure on any checkout).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from support.extensions import stale_extensions  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    stale = stale_extensions()
    if not stale:
        return
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=repo,
                       capture_output=True, text=True)
    if stale_extensions():
        pytest.exit(f"compiled modules older than their source: {', '.join(stale)}; `python setup.py build_ext "
                    f"--inplace` did not rebuild them:\n{r.stderr[-2000:]}", returncode=4)
