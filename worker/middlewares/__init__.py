"""Built-in middlewares, one module per config ``type`` (``rate-limit`` → ``rate_limit.py`` → ``RateLimit``).

``REGISTRY`` maps a type string to its class; ``build(name, params)`` makes the instance for one generation.
A class is constructed from already-validated params (``shared/config/middleware_schema.py`` checks them at
load), so construction cannot fail on user input.
"""

from __future__ import annotations

from typing import Any

REGISTRY: dict[str, type] = {}


def implemented(type_name: str) -> bool:
    return type_name in REGISTRY


def build(name: str, params: dict[str, Any]) -> Any:
    return REGISTRY[params["type"]](name, params)
