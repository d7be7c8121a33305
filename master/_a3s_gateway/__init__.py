"""a3s-gateway: the public embeddable API.

    from a3s_gateway import Gateway, GatewayConfig

``Gateway`` runs the master side of a node (binds sockets, supervises worker processes, reloads, stops);
``GatewayConfig`` loads and validates configs (TOML, YAML, dicts). Everything else under
``a3s_gateway.master``, ``.worker`` and ``.shared`` is internal and may change.

Names are resolved lazily (PEP 562) so that importing an internal subpackage — as every worker process does —
does not drag in the master's dependencies.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from . import extensions

extensions.install()          # A3S_GATEWAY_NO_EXTENSIONS: before any compiled module can load

_EXPORTS = {
    "Gateway": "a3s_gateway.master.gateway",
    "GatewayConfig": "a3s_gateway.shared.config",
    "ConfigError": "a3s_gateway.shared.errors",
    "GatewayError": "a3s_gateway.shared.errors",
    "StateError": "a3s_gateway.shared.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'a3s_gateway' has no attribute {name!r}")
