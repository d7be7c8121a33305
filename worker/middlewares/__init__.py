"""Built-in middlewares, one module per config ``type`` (``rate-limit`` → ``rate_limit.py`` → ``RateLimit``).

``REGISTRY`` maps a type string to its class. A class is constructed from already-validated params
(``shared/config/middleware_schema.py`` checks them at load), so construction cannot fail on user input.

``Builder`` is the one place a worker turns ``[middlewares.*]`` into instances. An instance whose name and
params are unchanged by a reload is reused, so its state (connection pools, JWKS cache) survives; a middleware
referenced by several routers is one instance. Kinds that keep per-router state key it by ``ex.route.name``
(``rate-limit-redis`` with ``key = "router"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..chain import Middleware
from .add_prefix import AddPrefix
from .api_key import ApiKey
from .basic_auth import BasicAuth
from .body_limit import BodyLimit
from .channel_webhook import ChannelWebhook
from .circuit_breaker import CircuitBreaker
from .compress import Compress
from .cors import Cors
from .forward_auth import ForwardAuth
from .headers import Headers
from .ip_allow import IpAllow, IpBlock
from .jwt import Jwt
from .priority import Priority
from .privacy_router import PrivacyRouter
from .rate_limit import RateLimit
from .rate_limit_redis import RateLimitRedis
from .redirect_regex import RedirectRegex
from .redirect_scheme import RedirectScheme
from .replace_path import ReplacePath
from .retry import Retry
from .strip_prefix import StripPrefix
from .strip_prefix_regex import StripPrefixRegex
from .token_meter import TokenMeter

if TYPE_CHECKING:
    from ..process import Worker

REGISTRY: dict[str, type[Middleware]] = {
    "api-key": ApiKey,
    "basic-auth": BasicAuth,
    "jwt": Jwt,
    "forward-auth": ForwardAuth,
    "rate-limit": RateLimit,
    "rate-limit-redis": RateLimitRedis,
    "cors": Cors,
    "headers": Headers,
    "strip-prefix": StripPrefix,
    "strip-prefix-regex": StripPrefixRegex,
    "add-prefix": AddPrefix,
    "replace-path": ReplacePath,
    "redirect-scheme": RedirectScheme,
    "redirect-regex": RedirectRegex,
    "body-limit": BodyLimit,
    "retry": Retry,
    "ip-allow": IpAllow,
    "ip-block": IpBlock,
    "compress": Compress,
    "circuit-breaker": CircuitBreaker,
    # AI-agent extensions
    "channel-webhook": ChannelWebhook,
    "privacy-router": PrivacyRouter,
    "token-meter": TokenMeter,
    "priority": Priority,
}


def implemented(type_name: str) -> bool:
    return type_name in REGISTRY


def build(name: str, params: dict[str, Any], worker: Worker | None = None) -> Middleware:
    return REGISTRY[params["type"]](name, params, worker)


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
