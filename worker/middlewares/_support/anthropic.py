"""The Anthropic Messages wire format, translated to and from OpenAI chat completions (a target's
``format = "anthropic"``).

Request: an OpenAI ``/v1/chat/completions`` body becomes an Anthropic ``/v1/messages`` body: ``system`` messages
are joined into the top-level ``system``; ``user`` / ``assistant`` messages keep their text (content parts of
type ``text``; other parts are dropped: images and tool calls are not translated); ``max_tokens`` (or
``max_completion_tokens``, else ``DEFAULT_MAX_TOKENS``: Anthropic requires it), ``temperature``, ``top_p``,
``stop`` (→ ``stop_sequences``), ``stream`` and ``user`` (→ ``metadata.user_id``) carry over.

Response: ``Translation`` is the exchange's response-side hook (``ex.translation``, run by
``exchange.response_head`` around the chain's response phase). A JSON message becomes a ``chat.completion``, an
Anthropic error body an OpenAI ``{"error": {...}}``; an SSE stream of Anthropic events (``message_start``,
``content_block_delta``, ``message_delta``, ``message_stop``) becomes ``chat.completion.chunk`` events ending
with ``data: [DONE]``. The chunk that carries ``finish_reason`` also carries ``usage`` (prompt and completion
tokens from ``message_start`` / ``message_delta``), so a ``token-meter`` sees exact usage for streams.

Invariants: the translating filter is the outermost body filter (it sees the provider's bytes first and hands
OpenAI bytes to the filters the chain set, ``token-meter`` and ``compress``); a JSON body is held back whole
(bounded by ``MAX_JSON``: past it the body passes unchanged), an SSE stream is translated event by event and
never held back longer than one event.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ...chain import BodyFilter

VERSION = b"2023-06-01"
DEFAULT_MAX_TOKENS = 4096
MAX_JSON = 8 << 20
MAX_EVENT = 1 << 20
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _text(content: Any) -> str:
    """The text of an OpenAI message's content: a string, or the ``text`` parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def request(doc: dict[str, Any]) -> dict[str, Any]:
    """The Anthropic Messages body for an OpenAI chat completions body (``doc`` is not modified)."""
    system, messages = [], []
    for m in doc.get("messages") or ():
        if not isinstance(m, dict):
            continue
        role, text = m.get("role"), _text(m.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant"):
            if messages and messages[-1]["role"] == role:      # Anthropic wants alternating roles
                messages[-1]["content"] += "\n\n" + text
            else:
                messages.append({"role": role, "content": text})
    out: dict[str, Any] = {"model": doc.get("model"), "messages": messages,
                           "max_tokens": doc.get("max_tokens") or doc.get("max_completion_tokens")
                           or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p", "stream"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    stop = doc.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(doc.get("user"), str):
        out["metadata"] = {"user_id": doc["user"]}
    return out


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


def message(doc: Any) -> Any:
    """An OpenAI answer (a ``chat.completion``, or an error body) for an Anthropic JSON body."""
    if not isinstance(doc, dict):
        return doc
    if doc.get("type") == "error" or "error" in doc:
        err = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        return {"error": {"message": err.get("message", ""), "type": err.get("type", "api_error"),
                          "param": None, "code": None}}
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
    return {"id": doc.get("id"), "object": "chat.completion", "created": int(time.time()), "model": doc.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": _text(doc.get("content"))},
                         "finish_reason": FINISH.get(doc.get("stop_reason"), "stop"), "logprobs": None}],
            "usage": _usage(usage.get("input_tokens") or 0, usage.get("output_tokens") or 0)}


class JsonBody:
    """Holds an Anthropic JSON body back whole, then hands its OpenAI translation to ``inner``."""

    __slots__ = ("buf", "inner", "passing")

    def __init__(self, inner: BodyFilter | None) -> None:
        self.inner = inner
        self.buf = bytearray()
        self.passing = False                 # over MAX_JSON: the rest passes untranslated

    def _out(self, data: bytes) -> bytes:
        return self.inner.feed(data) if self.inner is not None else data

    def feed(self, data: bytes) -> bytes:
        if self.passing:
            return self._out(data)
        self.buf += data
        if len(self.buf) > MAX_JSON:
            self.passing = True
            data, self.buf = bytes(self.buf), bytearray()
            return self._out(data)
        return b""

    def finish(self) -> bytes:
        out = b""
        if not self.passing:
            try:
                out = orjson.dumps(message(orjson.loads(self.buf)))
            except orjson.JSONDecodeError:
                out = bytes(self.buf)
        out = self._out(out) if out else b""
        return out + (self.inner.finish() if self.inner is not None else b"")


class EventStream:
    """Translates Anthropic SSE events into OpenAI ``chat.completion.chunk`` events as they arrive."""

    __slots__ = ("created", "id", "inner", "input_tokens", "line", "model")

    def __init__(self, inner: BodyFilter | None) -> None:
        self.inner = inner
        self.line = b""
        self.id = ""
        self.model = ""
        self.input_tokens = 0
        self.created = int(time.time())

    def feed(self, data: bytes) -> bytes:
        lines = (self.line + data).split(b"\n")
        self.line = lines.pop()
        if len(self.line) > MAX_EVENT:
            self.line = b""
        out = b"".join(self._line(line.rstrip(b"\r")) for line in lines)
        return (self.inner.feed(out) if self.inner is not None else out) if out else b""

    def finish(self) -> bytes:
        out = self._line(self.line) if self.line else b""
        self.line = b""
        if self.inner is not None:
            return (self.inner.feed(out) if out else b"") + self.inner.finish()
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> bytes:
        doc: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            doc["usage"] = usage
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def _line(self, line: bytes) -> bytes:
        if not line.startswith(b"data:"):
            return b""                       # event: names repeat the data's "type"; comments and blanks
        try:
            event = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(event, dict):
            return b""
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.id, self.model = msg.get("id", ""), msg.get("model", "")
            self.input_tokens = (msg.get("usage") or {}).get("input_tokens") or 0
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_delta":
            text = (event.get("delta") or {}).get("text")
            return self._chunk({"content": text}) if isinstance(text, str) and text else b""
        if kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            output = (event.get("usage") or {}).get("output_tokens") or 0
            return self._chunk({}, FINISH.get(reason, "stop"), _usage(self.input_tokens, output))
        if kind == "message_stop":
            return b"data: [DONE]\n\n"
        if kind == "error":
            return b"data: " + orjson.dumps(message(event)) + b"\n\n"
        return b""                           # ping, content_block_start / _stop


class Translation:
    """The response side of an Anthropic target, as ``exchange.response_head`` runs it."""

    __slots__ = ("sse",)

    def __init__(self) -> None:
        self.sse = False

    def head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        """Before the chain's response phase: the head as an OpenAI provider would have sent it."""
        for name, value in fields:
            if name.lower() == b"content-type":
                self.sse = value.startswith(b"text/event-stream")
                break
        if not self.sse:
            fields[:] = [f for f in fields if f[0].lower() not in (b"content-length", b"content-type")]
            fields.append((b"Content-Type", b"application/json"))

    def wrap(self, inner: BodyFilter | None) -> BodyFilter:
        """After the chain's response phase: the outermost body filter."""
        return EventStream(inner) if self.sse else JsonBody(inner)
