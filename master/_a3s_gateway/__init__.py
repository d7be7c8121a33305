"""a3s-gateway: the public embeddable API.

    from a3s_gateway import Gateway, GatewayConfig

``Gateway`` runs the master side of a node (binds sockets, supervises worker processes, reloads, stops);
``GatewayConfig`` loads and validates configs (TOML, YAML, dicts). Everything else under
``a3s_gateway.master``, ``.worker`` and ``.shared`` is internal and may change.
"""

from a3s_gateway.master.gateway import Gateway
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.shared.errors import ConfigError, GatewayError, StateError

__all__ = ["ConfigError", "Gateway", "GatewayConfig", "GatewayError", "StateError"]
