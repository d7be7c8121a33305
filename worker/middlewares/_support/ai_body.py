"""The JSON body of an OpenAI-compatible request, read and parsed at most once per exchange.

``Model()`` routing (``worker/exchange.py``), ``ai-provider`` and ``prompt-guard`` all need the same parsed body;
``inspect`` reads it whole up to ``[limits] model_inspect_bytes`` (``body_buffer.read_body``), parses it, checks
that ``model`` is a string and caches the result (or the error) on ``ex.ai_body``, so a second caller pays
nothing. The body then goes on with an exact Content-Length (``forward_body``). Errors are JSON replies: 413 over
the limit, 400 for a body that is not JSON or a ``model`` that is not a string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ...chain import Reply, error_reply
from .body_buffer import forward_body, read_body

if TYPE_CHECKING:
    from ...exchange import Exchange


class AIBody:
    """``doc``: the parsed body (None without a body); ``model``: its ``model`` string, or None."""

    __slots__ = ("doc", "model")

    def __init__(self, doc: Any, model: str | None) -> None:
        self.doc = doc
        self.model = model


NO_BODY = AIBody(None, None)


async def inspect(ex: Exchange) -> AIBody | Reply:
    """The exchange's parsed JSON body, or the JSON error reply to answer with."""
    cached = ex.ai_body
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    ex.ai_body = result = await _read(ex)
    return result


async def _read(ex: Exchange) -> AIBody | Reply:
    if not (ex.req_has_body or ex.pending):
        return NO_BODY
    limits = ex.conn.worker.limits  # type: ignore[union-attr]
    got = await read_body(ex, limits.model_inspect_bytes, limits.body_timeout)
    if got.__class__ is Reply:
        if got.status == 413:  # type: ignore[union-attr]
            return error_reply(413, "Request body is over the AI inspection limit ([limits] model_inspect_bytes)",
                               max_bytes=limits.model_inspect_bytes)
        return got  # type: ignore[return-value]
    body: bytes = got  # type: ignore[assignment]
    forward_body(ex, body)
    if not body:
        return NO_BODY
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error_reply(400, "Request body is not JSON; an OpenAI-compatible JSON body is expected")
    model = doc.get("model") if isinstance(doc, dict) else None
    if model is not None and not isinstance(model, str):
        return error_reply(400, "'model' in the request body must be a string", got=type(model).__name__)
    return AIBody(doc, model)


def prompt_chars(doc: Any) -> int:
    """The characters of a request's prompt: the text of ``messages`` (string content or ``text`` parts),
    ``prompt``, ``input`` and ``system`` — what an estimate of the input tokens counts (chars / chars-per-token,
    without a tokenizer: the gateway has no network to fetch tokenizer files)."""
    if not isinstance(doc, dict):
        return 0
    n = 0
    for key in ("prompt", "input", "system"):
        n += _chars(doc.get(key))
    for m in doc.get("messages") or ():
        if isinstance(m, dict):
            n += _chars(m.get("content"))
    return n


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_chars(v) if isinstance(v, str) else _chars(v.get("text") or v.get("content"))
                   for v in value if isinstance(v, str | dict))
    return 0
