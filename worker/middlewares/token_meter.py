"""``token-meter``: LLM token and cost budgets per user, agent, session, API key, team, model and globally, on
sliding windows, that hold for streaming and across workers (and across nodes with ``redis_url``).

Keys (spec §11.3, extended): ``user:<id>``, ``agent:<id>``, ``session:<id>``, ``team:<id>`` (ids from
``user_header``, ``agent_header``, ``session_header``, ``team_header``; put JWT claims there with the ``jwt``
middleware's ``claims_to_headers``, which verifies the token and drops client copies), ``key:<client key>``
(``key_header``, a ``Bearer`` prefix dropped; only a fingerprint is stored), ``model:<model>`` (the body's
``model``) and ``global``. Each enabled kind (``keys``) whose id is present is metered independently; limits
come from ``max_tokens`` (or ``max_cost``) / ``window``, per kind from ``limits``, per exact key from
``overrides``. ``measure`` says what is counted: ``total``, ``input`` or ``output`` tokens, or ``cost``
(``prices`` per million input / output tokens of each model; counted in millionths of the currency).

Request phase (a JSON body is parsed once, ``ai_body``, up to ``[limits] model_inspect_bytes``; a body of
another type, or declaring a larger length, is not read and counts 0 until reconciled): the request's charge is
estimated — the prompt's characters / ``chars_per_token`` for input, the request's ``max_tokens`` /
``max_completion_tokens`` (else ``output_reserve``) for output — and **pre-charged** to every key at once if
all are under their limit (``token_budgets``: atomic across workers, and across nodes in Redis). A key at or
over its limit answers 429 with ``Retry-After`` (seconds until enough usage slides out) before the backend is
called. So N concurrent requests overshoot a budget by at most one request's charge (when their answers stay
within the reserve).

Response phase: a pass-through body filter reads what the backend really reported, without holding the
stream back: the ``usage`` object of an OpenAI-compatible JSON response (``prompt_tokens`` /
``completion_tokens``, or ``input_tokens`` / ``output_tokens``; the JSON body is copied up to
``max_parse_bytes`` for this), or for ``text/event-stream`` the last ``data:`` chunk carrying ``usage``
(``stream_options.include_usage``; an Anthropic target's translated stream always has it). Without a usage
object the input is the estimate and the output ceil(characters of generated content / ``chars_per_token``)
(counted in ``tokens_estimated``). When the exchange ends (also when the client leaves mid-stream: whatever was
seen so far) the pre-charge is replaced by the real amount; a response that is not 2xx costs nothing. Every
response of a metered request carries ``X-RateLimit-Limit-Tokens`` and ``X-RateLimit-Remaining-Tokens`` of its
tightest key after its charge (``-Cost`` in cost mode, in currency units), plus the older ``X-Token-Limit`` /
``X-Token-Remaining``. Counts are exported as counters by key kind, never by id.

Place ``token-meter`` before ``compress`` (response phases run in reverse, so the meter then sees the
uncompressed body) and before ``ai-fallback`` (a refused request then never picks a target).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import orjson

from ..chain import Middleware, Reply, error_reply, header_value
from ._support.ai_body import NO_BODY, inspect, prompt_chars
from ._support.fail_open import FailOpen
from ._support.token_budgets import Budgets, PlaneBudgets, RedisBudgets

if TYPE_CHECKING:
    from ..chain import BodyFilter
    from ..exchange import Exchange
    from ..process import Worker

KINDS = ("user", "agent", "session", "key", "team", "model", "global")
MICRO = 1_000_000            # cost is counted in millionths: tokens x price per million tokens


class UsageTap:
    """A body filter that passes every byte through unchanged and remembers the token usage it saw."""

    __slots__ = ("buf", "chars", "inner", "input", "limit", "line", "output", "sse", "total")

    def __init__(self, inner: BodyFilter | None, sse: bool, limit: int) -> None:
        self.inner = inner
        self.sse = sse
        self.limit = limit
        self.buf = bytearray()
        self.line = b""
        self.total: int | None = None
        self.input: int | None = None
        self.output: int | None = None
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
            got = [v if isinstance(v := usage.get(a), int) else usage.get(b) for a, b in
                   (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens"))]
            self.input, self.output = (v if isinstance(v, int) else 0 for v in got)
            total = usage.get("total_tokens")
            self.total = total if isinstance(total, int) else self.input + self.output
        for choice in doc.get("choices") or ():
            if isinstance(choice, dict):
                content = (choice.get(part) or {}).get("content") if isinstance(choice.get(part), dict) else None
                if isinstance(content, str):
                    self.chars += len(content)


class Charge:
    """One metered request: its budgets, what was pre-charged when, and its tightest key after the charge."""

    __slots__ = ("at", "budgets", "charged", "estimate", "kinds", "limit", "model", "remaining")

    def __init__(self, kinds: list[str], budgets: Budgets, charged: int, at: float, estimate: int,
                 model: str | None, limit: float, remaining: float) -> None:
        self.kinds = kinds
        self.budgets = budgets
        self.charged = charged
        self.at = at
        self.estimate = estimate              # estimated input tokens, used when the answer has no usage
        self.model = model
        self.limit = limit
        self.remaining = remaining


class TokenMeter(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.kinds = [k for k in KINDS if k in params["keys"]]
        self.headers = {k: params[f"{k}_header"].lower().encode() for k in ("user", "agent", "session", "key", "team")}
        self.measure = params["measure"]
        self.cost = self.measure == "cost"
        self.unit = b"Cost" if self.cost else b"Tokens"
        default = (self._limit(params), params["window"])
        self.limits = {k: (self._limit(v) or default[0], v.get("window") or default[1])
                       for k, v in params["limits"].items()}
        for k in KINDS:
            self.limits.setdefault(k, default)
        self.overrides = {k: (self._limit(v) or self.limits[k.partition(":")[0]][0] if ":" in k else default[0],
                              v.get("window") or default[1]) for k, v in params["overrides"].items()}
        self.prices = {m: (p["input"], p["output"]) for m, p in params["prices"].items()}
        self.chars_per_token = params["chars_per_token"]
        self.output_reserve = params["output_reserve"]
        self.max_parse = params["max_parse_bytes"]
        self.store: PlaneBudgets | RedisBudgets | None = None
        if params["redis_url"] is not None:
            self.store = RedisBudgets(params["redis_url"], params["timeout_ms"] / 1000,
                                      FailOpen(name, worker, params["redis_url"], "admitting requests uncharged"))
        elif worker is not None and worker.plane is not None:
            self.store = PlaneBudgets(worker.plane)
        # usage belongs to this middleware's config: a changed config starts fresh windows
        self.scope = orjson.dumps([name, params], option=orjson.OPT_SORT_KEYS)[:200] + b"|"

    def _limit(self, table: dict[str, Any]) -> float | None:
        """A table's budget in counted units (tokens, or millionths of the currency)."""
        if self.cost:
            return table["max_cost"] * MICRO if table.get("max_cost") is not None else None
        return table.get("max_tokens")

    def keys(self, ex: Exchange, model: str | None) -> list[tuple[str, str, float, float]]:
        """(kind, key, limit, window) of every metered key of the request."""
        out = []
        for kind in self.kinds:
            if kind == "global":
                key = "global"
            elif kind == "model":
                if model is None:
                    continue
                key = "model:" + model
            else:
                v = header_value(ex.headers, self.headers[kind])
                if not v:
                    continue
                if kind == "key" and v[:7].lower() == b"bearer ":
                    v = v[7:]
                key = f"{kind}:{v.decode('latin-1')}"
            limit, window = self.overrides.get(key) or self.limits[kind]
            out.append((kind, key, limit, window))
        return out

    def amount(self, model: str | None, input_tokens: int, output_tokens: int) -> int:
        """What ``measure`` counts for these tokens."""
        if self.measure == "total":
            return input_tokens + output_tokens
        if self.measure == "input":
            return input_tokens
        if self.measure == "output":
            return output_tokens
        price_in, price_out = self._price(model) or (0.0, 0.0)
        return math.ceil(input_tokens * price_in + output_tokens * price_out)

    def _price(self, model: str | None) -> tuple[float, float] | None:
        return self.prices.get(model or "", self.prices.get("*"))

    def on_request(self, ex: Exchange) -> Any:
        return self.admit(ex)

    async def admit(self, ex: Exchange) -> Reply | None:
        got = await inspect(ex) if self._estimable(ex) else NO_BODY
        if got.__class__ is Reply:
            return got  # type: ignore[return-value]
        doc, model = got.doc, got.model  # type: ignore[union-attr]
        if self.cost and model is not None and self._price(model) is None:
            return error_reply(400, "The model has no price in this token-meter's prices", middleware=self.name,
                               model=model)
        metered = self.keys(ex, model)
        if not metered or self.store is None:
            return None
        estimate = math.ceil(prompt_chars(doc) / self.chars_per_token)
        reserve = doc.get("max_tokens") or doc.get("max_completion_tokens") if isinstance(doc, dict) else None
        n = self.amount(model, estimate, reserve if isinstance(reserve, int) and reserve > 0 else self.output_reserve)
        budgets = [(self._fp(key, window), window, limit) for _, key, limit, window in metered]
        charged = await self.store.charge(budgets, n)
        if charged is None:                   # the store failed: admitted uncharged (fail-open)
            return None
        refused, used, wait, at = charged
        if refused >= 0:
            kind, key, limit, window = metered[refused]
            self.worker.plane.ai_add("token_rejected_" + kind)  # type: ignore[union-attr]
            return error_reply(429, "Token budget exceeded", [
                (b"Retry-After", b"%d" % max(1, math.ceil(wait))), *self._fields(limit, 0)],
                key=key, limit=self._shown(limit), window_secs=window)
        tight = min(range(len(metered)), key=lambda i: metered[i][2] - used[i] - n)
        limit = metered[tight][2]
        ex.meter = Charge([m[0] for m in metered], budgets, n, at, estimate, model, limit, limit - used[tight] - n)
        ex.on_done = [*(ex.on_done or ()), self._done]
        return None

    @staticmethod
    def _estimable(ex: Exchange) -> bool:
        """Whether the body is read for an estimate: a JSON body that declares no length over ``[limits]
        model_inspect_bytes`` (another body, e.g. an audio upload, streams on and is metered from ``usage``)."""
        if ex.ai_body is not None:
            return True
        ctype = header_value(ex.headers, b"content-type") or b""
        if not ctype.startswith(b"application/json"):
            return False
        length = header_value(ex.headers, b"content-length")
        limit = ex.conn.worker.limits.model_inspect_bytes  # type: ignore[union-attr]
        return length is None or not length.isdigit() or int(length) <= limit

    def _shown(self, amount: float) -> float | int:
        return round(amount / MICRO, 6) if self.cost else int(amount)

    def _fields(self, limit: float, remaining: float) -> list[tuple[bytes, bytes]]:
        shown = [b"%d" % int(limit), b"%d" % max(0, int(remaining))] if not self.cost else [
            repr(self._shown(limit)).encode(), repr(self._shown(max(0.0, remaining))).encode()]
        fields = [(b"X-RateLimit-Limit-" + self.unit, shown[0]), (b"X-RateLimit-Remaining-" + self.unit, shown[1])]
        if not self.cost:
            fields += [(b"X-Token-Limit", shown[0]), (b"X-Token-Remaining", shown[1])]
        return fields

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        charge: Charge | None = getattr(ex, "meter", None)
        if charge is None:
            return
        headers += self._fields(charge.limit, charge.remaining)
        if not 200 <= status < 300 or ex.is_head or ex.backend is None:
            return
        ctype = header_value(headers, b"content-type") or b""
        tap = UsageTap(ex.filter, ctype.startswith(b"text/event-stream"), self.max_parse)
        ex.filter = ex.usage_tap = tap

    def _fp(self, key: str, window: float) -> bytes:
        return self.scope + b"%r|" % window + key.encode()

    def _done(self, ex: Exchange) -> None:
        charge: Charge = ex.meter
        tap = ex.usage_tap if 200 <= ex.status < 300 else None
        n = 0
        plane = self.worker.plane  # type: ignore[union-attr]
        if tap is not None:
            tap.settle()
            if tap.total is None:
                output = math.ceil(tap.chars / self.chars_per_token)
                input_tokens, total = charge.estimate, charge.estimate + output
                plane.ai_add("tokens_estimated", total)
            else:
                input_tokens, output = tap.input or 0, tap.output or 0
                total = tap.total
                if not (tap.input or tap.output):      # only a total: count it as input
                    input_tokens = total
            n = self.amount(charge.model, input_tokens, output) if self.measure != "total" else total
            for kind in charge.kinds:
                plane.ai_add("tokens_" + kind, total)
        self.store.settle(charge.budgets, charge.charged, charge.at, n)  # type: ignore[union-attr]

    def close(self) -> None:
        if isinstance(self.store, RedisBudgets):
            self.store.close()
