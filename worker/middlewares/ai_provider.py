"""``ai-provider``: what one OpenAI-compatible provider behind a router needs: its own model name and API key.

``models`` maps the public model name of the request body (exact, or ``"*"`` for any other) to the provider's
name; the body is rewritten only when the name changes (``ai_body.inspect``: parsed once per request, shared
with ``Model()`` routing). The client's credentials (``Authorization``, ``X-Api-Key``, ``Api-Key`` and
``header``) are always dropped and the provider's key (``api_key``, or the environment variable ``api_key_env``
read when the worker starts) is sent as ``header: scheme key``, so a client key never reaches a provider and
the provider key never reaches a client.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson

from ..chain import Middleware, Reply, error_reply
from ._support.ai_body import inspect
from ._support.body_buffer import forward_body

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

CLIENT_CREDENTIALS = frozenset((b"authorization", b"x-api-key", b"api-key"))


class AiProvider(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.models: dict[str, str] = params["models"]
        key = params["api_key"] or os.environ.get(params["api_key_env"] or "", "")
        self.header = params["header"].encode()
        self.drop = CLIENT_CREDENTIALS | {self.header.lower()}
        scheme = params["scheme"]
        self.credential = (f"{scheme} {key}" if scheme else key).encode() if key else None

    def on_request(self, ex: Exchange) -> Any:
        return self.prepare(ex)

    async def prepare(self, ex: Exchange) -> Reply | None:
        if self.credential is None:
            return error_reply(500, "The provider's API key is not configured", middleware=self.name)
        if self.models:
            got = await inspect(ex)
            if got.__class__ is Reply:
                return got  # type: ignore[return-value]
            doc, model = got.doc, got.model  # type: ignore[union-attr]
            target = self.models.get(model, self.models.get("*")) if model is not None else None
            if target is not None and target != model:
                doc["model"] = target
                forward_body(ex, orjson.dumps(doc))
        ex.headers = [h for h in ex.headers if h[0].lower() not in self.drop]
        ex.headers.append((self.header, self.credential))
        return None
