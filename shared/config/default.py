"""The embedded default config, used when no config file is given.

Invariant: ``DEFAULT_CONFIG`` is raw (un-normalized) input that passes validation on its own; it references only
the built-in services in ``DEFAULT_SERVICE_NAMES``.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SERVICE_NAMES: frozenset[str] = frozenset({"whoami@internal", "unresolved@internal", "unavailable@internal"})
"""Services the gateway provides itself; routers may name them without defining them."""

DEFAULT_CONFIG: dict[str, Any] = {
    "entrypoints": {"web": {"address": "127.0.0.1:8080", "protocol": "http"}},
    "routers": {"default": {"rule": "PathPrefix(`/`)", "service": "whoami@internal"}},
    "admin": {"enabled": True, "address": "127.0.0.1:9090"},
}
