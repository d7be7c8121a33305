"""``token-meter``: LLM token budgets per user, agent, session and globally, on sliding windows.

Keys (spec §11.3): ``user:<id>``, ``agent:<id>``, ``session:<id>`` (ids from ``user_header``,
``agent_header``, ``session_header``; put JWT claims there with the ``jwt`` middleware's ``claims_to_headers``,
which verifies the token and drops client copies) and ``global``. Each enabled kind (``keys``) whose id is
present is metered independently; limits come from ``max_tokens``/``window``, per kind from ``limits``, per
exact key from ``overrides``.

Request phase: if any key's sliding-window usage is already at or over its limit, answer 429 with
``Retry-After`` (seconds until enough usage slides out), ``X-Token-Limit`` and ``X-Token-Remaining: 0`` before
the backend is called. Otherwise the request proceeds, so a budget can be overshot by at most the tokens of
the requests admitted while it still had room (one request's worth when they are sequential).

Response phase: a pass-through body filter reads what the backend really reported, without holding the
stream back: the ``usage`` object of an OpenAI-compatible JSON response (``total_tokens``, else
``prompt_tokens + completion_tokens``; the JSON body is copied up to ``max_parse_bytes`` for this), or for
``text/event-stream`` the last ``data:`` chunk carrying ``usage`` (``stream_options.include_usage``). Without
a usage object the tokens are estimated as ceil(characters of generated content / ``chars_per_token``)
(``choices[].message.content`` / ``choices[].delta.content``; the prompt is not estimated) and counted in
``tokens_estimated``. Usage is recorded when the exchange ends, also when the client leaves mid-stream
(then whatever was seen so far). Only 2xx responses are metered. Counts are node-wide (``Plane.token_*``)
and exported as counters by key kind, never by id.

Place ``token-meter`` before ``compress`` in a router's middleware list (response phases run in reverse,
so the meter then sees the uncompressed body).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import orjson

from ..chain import Middleware, error_reply, header_value

if TYPE_CHECKING:
    from ..chain import BodyFilter
    from ..exchange import Exchange
    from ..process import Worker

KINDS = ("user", "agent", "session", "global")


class UsageTap:
    """A body filter that passes every byte through unchanged and remembers the token usage it saw."""

    __slots__ = ("buf", "chars", "inner", "limit", "line", "sse", "total")

    def __init__(self, inner: BodyFilter | None, sse: bool, limit: int) -> None:
        self.inner = inner
        self.sse = sse
        self.limit = limit
        self.buf = bytearray()
        self.line = b""
        self.total: int | None = None
        self.chars = 0

    def feed(self, data: bytes) -> bytes:
        if self.sse:
            lines = (self.line + data).split(b"\n")
            self.line = lines.pop()
            if len(self.line) > self.limit:
                self.line = b""
            for line in lines:
                self._event_line(line.rstrip(b"\r"))
        elif len(self.buf) + len(data) <= self.limit:
            self.buf += data
        else:
            self.buf = bytearray(b"!")     # too large to parse: estimate from nothing, count 0
        return self.inner.feed(data) if self.inner is not None else data

    def finish(self) -> bytes:
        self.settle()
        return self.inner.finish() if self.inner is not None else b""

    def settle(self) -> None:
        if self.sse:
            if self.line:
                self._event_line(self.line)
                self.line = b""
        elif self.buf:
            try:
                doc = orjson.loads(self.buf)
            except orjson.JSONDecodeError:
                doc = None
            self.buf = bytearray()
            if isinstance(doc, dict):
                self._usage(doc, "message")

    def _event_line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            return
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict):
            self._usage(doc, "delta")

    def _usage(self, doc: dict[str, Any], part: str) -> None:
        usage = doc.get("usage")
        if isinstance(usage, dict):
            total = usage.get("total_tokens")
            if not isinstance(total, int):
                total = sum(v for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
                            if isinstance(v := usage.get(k), int))
            self.total = total
        for choice in doc.get("choices") or ():
            if isinstance(choice, dict):
                content = (choice.get(part) or {}).get("content") if isinstance(choice.get(part), dict) else None
                if isinstance(content, str):
                    self.chars += len(content)


class TokenMeter(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.kinds = [k for k in KINDS if k in params["keys"]]
        self.headers = {"user": params["user_header"].lower().encode(),
                        "agent": params["agent_header"].lower().encode(),
                        "session": params["session_header"].lower().encode()}
        default = (params["max_tokens"], params["window"])
        self.limits = {k: (v.get("max_tokens") or default[0], v.get("window") or default[1])
                       for k, v in params["limits"].items()}
        for k in KINDS:
            self.limits.setdefault(k, default)
        self.overrides = {k: (v.get("max_tokens") or self.limits[k.split(":")[0]][0] if ":" in k else default[0],
                              v.get("window") or default[1]) for k, v in params["overrides"].items()}
        self.chars_per_token = params["chars_per_token"]
        self.max_parse = params["max_parse_bytes"]
        # usage belongs to this middleware's config: a changed config starts fresh windows
        self.scope = orjson.dumps([name, params], option=orjson.OPT_SORT_KEYS)[:200] + b"|"

    def keys(self, ex: Exchange) -> list[tuple[str, str, int, float]]:
        """(kind, key, limit, window) of every metered key of the request."""
        out = []
        for kind in self.kinds:
            if kind == "global":
                key = "global"
            else:
                v = header_value(ex.headers, self.headers[kind])
                if not v:
                    continue
                key = f"{kind}:{v.decode('latin-1')}"
            limit, window = self.overrides.get(key) or self.limits[kind]
            out.append((kind, key, limit, window))
        return out

    def _fp(self, key: str, window: float) -> bytes:
        return self.scope + b"%r|" % window + key.encode()

    def on_request(self, ex: Exchange) -> Any:
        plane = self.worker.plane
        now = time.time()
        tightest = None
        for kind, key, limit, window in self.keys(ex):
            used, per = plane.token_usage(self._fp(key, window), window, now)
            if used >= limit:
                plane.ai_add("token_rejected_" + kind)
                wait = plane.ai.retry_after(per, limit, window, now)
                return error_reply(429, "Token budget exceeded", [
                    (b"Retry-After", b"%d" % max(1, math.ceil(wait))), (b"X-Token-Limit", b"%d" % limit),
                    (b"X-Token-Remaining", b"0")], key=key, limit=limit, window_secs=window)
            remaining = limit - used
            if tightest is None or remaining < tightest[1]:
                tightest = (limit, remaining)
        if tightest is not None:
            ex.on_done = [*(ex.on_done or ()), self._done]
        return None

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if not 200 <= status < 300 or ex.is_head:
            return
        ctype = header_value(headers, b"content-type") or b""
        tap = UsageTap(ex.filter, ctype.startswith(b"text/event-stream"), self.max_parse)
        ex.filter = ex.usage_tap = tap
        plane = self.worker.plane
        now = time.time()
        tightest = None
        for _kind, key, limit, window in self.keys(ex):
            used, _ = plane.token_usage(self._fp(key, window), window, now)
            if tightest is None or limit - used < tightest[1]:
                tightest = (limit, limit - used)
        if tightest is not None:
            headers.append((b"X-Token-Limit", b"%d" % tightest[0]))
            headers.append((b"X-Token-Remaining", b"%d" % max(0, int(tightest[1]))))

    def _done(self, ex: Exchange) -> None:
        if not 200 <= ex.status < 300:
            return
        tap = getattr(ex, "usage_tap", None)
        if tap is None:
            return
        tap.settle()
        plane = self.worker.plane
        n = tap.total
        if n is None:
            n = math.ceil(tap.chars / self.chars_per_token)
            plane.ai_add("tokens_estimated", n)
        if n <= 0:
            return
        now = time.time()
        for kind, key, _limit, window in self.keys(ex):
            plane.token_record(self._fp(key, window), window, n, now)
            plane.ai_add("tokens_" + kind, n)
