"""Server-side SVG sparklines: a polyline of a series, so the pages need no chart library and no script."""

from __future__ import annotations

from collections.abc import Sequence

from .html import Markup


def sparkline(series: Sequence[float], width: int = 120, height: int = 24, label: str = "") -> Markup:
    """An inline ``<svg>`` of ``series`` scaled to its own maximum (a flat line at the bottom when all zero)."""
    if len(series) < 2:
        return Markup(f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="no data">'
                      "</svg>")
    top = max(series) or 1.0
    step = width / (len(series) - 1)
    points = " ".join(f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(series))
    return Markup(f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                  f'role="img" aria-label="{label} sparkline, max {top:.3g}"><polyline points="{points}"/></svg>')
