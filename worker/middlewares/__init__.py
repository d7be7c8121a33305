"""Built-in middlewares, one module per config ``type`` (``rate-limit`` → ``rate_limit.py`` → ``RateLimit``).

``REGISTRY`` maps a type string to its module and class (imported on first use). A class is constructed from
already-validated params (``shared/config/middleware_schema.py`` checks them at load), so construction cannot
fail on user input.

``Builder`` is the one place a worker turns ``[middlewares.*]`` into instances. An instance whose name and
params are unchanged by a reload is reused, so its state (connection pools, JWKS cache) survives; a middleware
referenced by several routers is one instance. Kinds that keep per-router state key it by ``ex.route.name``
(``rate-limit-redis`` with ``key = "router"``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

import orjson

from ..chain import Middleware

if TYPE_CHECKING:
    from ..process import Worker

# type → (module, class). Modules are imported on first use: a worker only pays for the middlewares its
# config uses (aiohttp, redis, PyJWT, cryptography… are heavy imports and slow every worker start otherwise).
REGISTRY: dict[str, tuple[str, str]] = {
    "api-key": ("api_key", "ApiKey"),
    "basic-auth": ("basic_auth", "BasicAuth"),
    "jwt": ("jwt", "Jwt"),
    "forward-auth": ("forward_auth", "ForwardAuth"),
    "rate-limit": ("rate_limit", "RateLimit"),
    "rate-limit-redis": ("rate_limit_redis", "RateLimitRedis"),
    "cors": ("cors", "Cors"),
    "headers": ("headers", "Headers"),
    "strip-prefix": ("strip_prefix", "StripPrefix"),
    "strip-prefix-regex": ("strip_prefix_regex", "StripPrefixRegex"),
    "add-prefix": ("add_prefix", "AddPrefix"),
    "replace-path": ("replace_path", "ReplacePath"),
    "redirect-scheme": ("redirect_scheme", "RedirectScheme"),
    "redirect-regex": ("redirect_regex", "RedirectRegex"),
    "body-limit": ("body_limit", "BodyLimit"),
    "retry": ("retry", "Retry"),
    "ip-allow": ("ip_allow", "IpAllow"),
    "ip-block": ("ip_allow", "IpBlock"),
    "compress": ("compress", "Compress"),
    "circuit-breaker": ("circuit_breaker", "CircuitBreaker"),
    # AI-agent extensions
    "channel-webhook": ("channel_webhook", "ChannelWebhook"),
    "privacy-router": ("privacy_router", "PrivacyRouter"),
    "token-meter": ("token_meter", "TokenMeter"),
    "priority": ("priority", "Priority"),
}


def middleware_class(type_name: str) -> type[Middleware]:
    module, cls = REGISTRY[type_name]
    return getattr(import_module(f"{__name__}.{module}"), cls)


def implemented(type_name: str) -> bool:
    return type_name in REGISTRY


def build(name: str, params: dict[str, Any], worker: Worker | None = None) -> Middleware:
    return middleware_class(params["type"])(name, params, worker)


class Builder:
    """Builds each generation's middlewares for one worker, reusing instances whose config did not change."""

    def __init__(self, worker: Worker | None = None) -> None:
        self.worker = worker
        self.live: dict[str, tuple[bytes, Middleware]] = {}

    def __call__(self, configs: dict[str, dict[str, Any]]) -> dict[str, Middleware]:
        live: dict[str, tuple[bytes, Middleware]] = {}
        for name, params in configs.items():
            fingerprint = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
            old = self.live.get(name)
            live[name] = old if old is not None and old[0] == fingerprint else (
                fingerprint, build(name, params, self.worker))
        for name, (_, m) in self.live.items():
            if live.get(name, (b"", None))[1] is not m:
                m.close()       # resources reopen lazily should a request of the old generation still use it
        self.live = live
        return {name: m for name, (_, m) in live.items()}
