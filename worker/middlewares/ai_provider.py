"""``ai-provider``: what one provider behind a router needs: its own model name, API key and wire format.

``models`` maps the public model name of the request body (exact, or ``"*"`` for any other) to the provider's
name; the body is rewritten only when the name changes (``ai_body.inspect``: parsed once per request, shared
with ``Model()`` routing). The client's credentials (``Authorization``, ``X-Api-Key``, ``Api-Key`` and
``header``) are always dropped and the provider's key (``api_key``, or the environment variable ``api_key_env``
read when the worker starts) is sent as ``header: scheme key``, so a client key never reaches a provider and
the provider key never reaches a client. ``format = "anthropic"``: the request goes to ``/v1/messages`` in the
Anthropic Messages format and the answer comes back as OpenAI's (``_support/anthropic.py``); ``header`` /
``scheme`` then default to ``X-Api-Key`` and none.

``Provider`` is that adaptation on its own: ``ai-fallback`` applies one per target, attempt by attempt.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson

from ..chain import Middleware, Reply, error_reply
from ._support import anthropic
from ._support.ai_body import NO_BODY, inspect
from ._support.body_buffer import forward_body

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

CLIENT_CREDENTIALS = frozenset((b"authorization", b"x-api-key", b"api-key"))
MESSAGES_PATH = b"/v1/messages"
DEFAULT_AUTH = {"openai": ("Authorization", "Bearer"), "anthropic": ("X-Api-Key", "")}


class Provider:
    """One provider's model names, credential and wire format, applied to a request whose body is parsed."""

    __slots__ = ("anthropic", "credential", "drop", "header", "models")

    def __init__(self, params: dict[str, Any]) -> None:
        self.models: dict[str, str] = params["models"]
        self.anthropic = params["format"] == "anthropic"
        header, scheme = DEFAULT_AUTH[params["format"]]
        header = params["header"] or header
        scheme = scheme if params["scheme"] is None else params["scheme"]
        key = params["api_key"] or os.environ.get(params["api_key_env"] or "", "")
        self.header = header.encode()
        self.drop = CLIENT_CREDENTIALS | {self.header.lower(), b"anthropic-version"}
        self.credential = (f"{scheme} {key}" if scheme else key).encode() if key else None

    def apply(self, ex: Exchange, doc: Any, model: str | None) -> None:
        """Rewrite the model, translate the format and put the provider's key on ``ex`` (attempt by attempt:
        ``doc``, the client's body, is never modified)."""
        target = self.models.get(model, self.models.get("*")) if model is not None and self.models else None
        if self.anthropic and isinstance(doc, dict):
            body = anthropic.request({**doc, "model": target or model})
            forward_body(ex, orjson.dumps(body), b"application/json")
            ex.target = MESSAGES_PATH
            ex.translation = anthropic.Translation()
        else:
            ex.translation = None
            if target is not None and target != model:
                forward_body(ex, orjson.dumps({**doc, "model": target}))
        headers = [h for h in ex.headers if h[0].lower() not in self.drop]
        headers.append((self.header, self.credential))  # type: ignore[arg-type]
        if self.anthropic:
            headers.append((b"Anthropic-Version", anthropic.VERSION))
        ex.headers = headers


class AiProvider(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.provider = Provider(params)

    def on_request(self, ex: Exchange) -> Any:
        return self.prepare(ex)

    async def prepare(self, ex: Exchange) -> Reply | None:
        provider = self.provider
        if provider.credential is None:
            return error_reply(500, "The provider's API key is not configured", middleware=self.name)
        got = await inspect(ex) if provider.models or provider.anthropic else NO_BODY
        if got.__class__ is Reply:
            return got  # type: ignore[return-value]
        provider.apply(ex, got.doc, got.model)  # type: ignore[union-attr]
        return None
