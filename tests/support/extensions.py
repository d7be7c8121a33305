"""The compiled hot path as the tests see it: which compiled modules lie beside their source, and which are stale."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from a3s_gateway.extensions import COMPILED, SWITCH

REPO = Path(__file__).resolve().parents[2]


def built(name: str) -> Path | None:
    """The extension built in place for module ``name`` (``build_ext --inplace``, editable installs), if any."""
    source = REPO / COMPILED[name]
    for suffix in EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def stale_extensions() -> list[str]:
    """Modules whose in-place extension is older than its ``.py`` or ``.pxd``."""
    stale = []
    for name, path in COMPILED.items():
        ext = built(name)
        if ext is None:
            continue
        sources = [REPO / path, (REPO / path).with_suffix(".pxd")]
        newest = max(s.stat().st_mtime for s in sources if s.is_file())
        if ext.stat().st_mtime < newest:
            stale.append(name)
    return stale


def expected_build(env: dict[str, str]) -> str:
    """What ``--version`` and the health endpoint should say for a gateway started with ``env``."""
    if env.get(SWITCH, "") not in ("", "0"):
        return "pure"
    n = sum(built(name) is not None for name in COMPILED)
    return f"compiled ({n} of {len(COMPILED)} modules)" if n else "pure"
