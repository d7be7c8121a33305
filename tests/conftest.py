"""Puts ``tests/`` on ``sys.path`` so every test can ``import support`` (tests/support/), whatever the import
mode (pytest runs with ``--import-mode=importlib``, which adds no test folder to the path by itself)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
