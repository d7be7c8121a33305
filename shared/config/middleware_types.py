"""The registry of middleware types: each config ``type``, the keys its table accepts and the worker class that
implements it, and the spec of a ``[middlewares.<name>]`` table, which picks the key table by ``type``.

Invariants:

* ``MIDDLEWARE_TYPES`` is the only list of middleware types. The validator accepts exactly its types and the
  worker builds them from it, so a type cannot be valid in config and missing in the worker. A new type is one
  entry here, its key table (``middleware_schema.py``, or ``ai_schema.py`` for the AI-agent types) and its module.
* An implementation is named by a string, so the master, which validates, never imports the data plane, and a
  worker imports only the middleware modules its config uses. Module, class and type share a name
  (``rate-limit`` → ``rate_limit:RateLimit``); ``ip-block`` lives beside ``ip-allow`` in ``ip_allow.py``.
* A normalized middleware is ``{"type": <type>, **<every key of that type, defaults filled>}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ai_schema as ai
from . import middleware_schema as core
from .schema import INVALID, Reporter, Spec, Str, Table, join


@dataclass(frozen=True, slots=True)
class MiddlewareType:
    """One config ``type``: where the worker finds its class and which keys its table accepts."""

    implementation: str
    """``"module:Class"``, the module relative to ``a3s_gateway.worker.middlewares``."""
    keys: Table
    service_keys: tuple[str, ...] = ()
    """Keys naming a service, checked at load like a router's ``service`` (``validate.py``); ``list[].key``
    names the key in every table of a list."""


MIDDLEWARE_TYPES: dict[str, MiddlewareType] = {
    "api-key": MiddlewareType("api_key:ApiKey", core.API_KEY),
    "basic-auth": MiddlewareType("basic_auth:BasicAuth", core.BASIC_AUTH),
    "jwt": MiddlewareType("jwt:Jwt", core.JWT),
    "forward-auth": MiddlewareType("forward_auth:ForwardAuth", core.FORWARD_AUTH),
    "rate-limit": MiddlewareType("rate_limit:RateLimit", core.RATE_LIMIT),
    "rate-limit-redis": MiddlewareType("rate_limit_redis:RateLimitRedis", core.RATE_LIMIT_REDIS),
    "cors": MiddlewareType("cors:Cors", core.CORS),
    "headers": MiddlewareType("headers:Headers", core.HEADERS),
    "strip-prefix": MiddlewareType("strip_prefix:StripPrefix", core.STRIP_PREFIX),
    "strip-prefix-regex": MiddlewareType("strip_prefix_regex:StripPrefixRegex", core.STRIP_PREFIX_REGEX),
    "add-prefix": MiddlewareType("add_prefix:AddPrefix", core.ADD_PREFIX),
    "replace-path": MiddlewareType("replace_path:ReplacePath", core.REPLACE_PATH),
    "replace-path-regex": MiddlewareType("replace_path_regex:ReplacePathRegex", core.REPLACE_PATH_REGEX),
    "redirect-scheme": MiddlewareType("redirect_scheme:RedirectScheme", core.REDIRECT_SCHEME),
    "redirect-regex": MiddlewareType("redirect_regex:RedirectRegex", core.REDIRECT_REGEX),
    "body-limit": MiddlewareType("body_limit:BodyLimit", core.BODY_LIMIT),
    "retry": MiddlewareType("retry:Retry", core.RETRY),
    "ip-allow": MiddlewareType("ip_allow:IpAllow", core.IP_ALLOW),
    "ip-block": MiddlewareType("ip_allow:IpBlock", core.IP_BLOCK),
    "compress": MiddlewareType("compress:Compress", core.COMPRESS),
    "circuit-breaker": MiddlewareType("circuit_breaker:CircuitBreaker", core.CIRCUIT_BREAKER),
    "websocket-mux": MiddlewareType("websocket_mux:WebsocketMux", core.WEBSOCKET_MUX),
    # AI-agent extensions
    "channel-webhook": MiddlewareType("channel_webhook:ChannelWebhook", ai.CHANNEL_WEBHOOK),
    "privacy-router": MiddlewareType("privacy_router:PrivacyRouter", ai.PRIVACY_ROUTER, ("tee_service",)),
    "token-meter": MiddlewareType("token_meter:TokenMeter", ai.TOKEN_METER),
    "priority": MiddlewareType("priority:Priority", ai.PRIORITY),
    "ai-provider": MiddlewareType("ai_provider:AiProvider", ai.AI_PROVIDER),
    "semantic-cache": MiddlewareType("semantic_cache:SemanticCache", ai.SEMANTIC_CACHE),
    "prompt-guard": MiddlewareType("prompt_guard:PromptGuard", ai.PROMPT_GUARD),
    "ai-fallback": MiddlewareType("ai_fallback:AiFallback", ai.AI_FALLBACK, ("targets[].service",)),
}


class MiddlewareSpec(Spec):
    """A ``[middlewares.<name>]`` table: ``type`` picks the key table from ``MIDDLEWARE_TYPES``."""

    expected = "a table"
    _type = Str(choices=MIDDLEWARE_TYPES)

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        if not isinstance(value, dict):
            self.type_error(value, path, rep)
            return INVALID
        type_path = join(path, "type")
        if "type" not in value:
            rep.add(type_path, "required key is missing")
            return INVALID
        kind = self._type.normalize(value["type"], type_path, rep)
        if kind is INVALID:
            return INVALID

        def foreign_key(key: str) -> str | None:
            if any(key in t.keys.fields for t in MIDDLEWARE_TYPES.values()):
                return f"key '{key}' does not apply to middleware type '{kind}'"
            return None

        rest = {k: v for k, v in value.items() if k != "type"}
        return {"type": kind, **MIDDLEWARE_TYPES[kind].keys.convert_table(rest, path, rep, foreign_key)}


MIDDLEWARE = MiddlewareSpec()
