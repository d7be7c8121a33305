"""The compiled generation: what the master hands to every worker after a config is accepted.

A generation is a JSON-serializable dict: ``{"generation": N, "config": <normalized config data>}``. The
master validates and normalizes once (rules parsed, every reference resolved, defaults filled); workers build
their runtime objects from it and can rely on it being valid. Generations only grow; a worker answers each with
``loaded`` or ``load_failed``.
"""

from __future__ import annotations

from typing import Any

from .config import GatewayConfig


def compile_generation(cfg: GatewayConfig, generation: int) -> dict[str, Any]:
    return {"generation": generation, "config": cfg.to_dict()}


def spec_lids(spec: dict[str, Any]) -> list[int]:
    """The listener sets (``master/sockets.py``) an entrypoint's listener spec uses: its own, and the UDP one of
    its HTTP/3 side."""
    return [spec["lid"], spec["h3_lid"]] if "h3_lid" in spec else [spec["lid"]]
