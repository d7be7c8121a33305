"""``ai-fallback``: an ordered list of provider targets for the models a router serves, tried in order.

Each target is a service with its own provider adaptation (``ai_provider.Provider``: model name, API key, wire
format) and optionally a context window (``max_input_tokens``). A request goes to the first target that can
take it; an attempt that fails moves it to the next one:

    connect failure / timeout   (the service's connect and response timeouts: a slow first byte is a timeout)
    429                         the target cools down for ``Retry-After`` (seconds or a date; else ``cooldown``),
                                node-wide: its backends are held down in the plane, so every worker skips it
    5xx
    context-window error        a 400/413 whose body says the prompt is too long (``CONTEXT_ERRORS``); the body
                                is read (``upstream/http1.py``, HTTP/1.1 backends) before it is decided

A target is skipped without a request when its ``max_input_tokens`` is below the request's estimated input
tokens (characters of the prompt / ``chars_per_token``), or while none of its backends is healthy (cooling down
or down by health checks). No target left: 400 when every target's context window is too small, else 503 with
``Retry-After`` until the first cooldown ends.

Invariants: this rides on the exchange's retry path (``ex.retry``; ``exchange.repick`` asks ``next_backend``),
so there is one attempt counter for the whole request — ``max_attempts`` in all, across targets; moving to a
fallback never restarts it. Fallbacks are immediate (no delay) and for every method. A response that has
started reaching the client is never retried (the exchange's RESPONDING state). Each attempt's outcome is
recorded once (``ex.ai_attempts``: the access log's ``ai`` field; the plane's per-target counters:
``a3s_gateway_ai_attempts_total``). The client's body is kept parsed (``ai_body``) and each attempt's body is
built from it, so a translation or rewrite for one target never leaks into the next.
"""

from __future__ import annotations

import email.utils
import math
import time
from typing import TYPE_CHECKING, Any

import orjson

from ...shared.errors import UpstreamTimeout
from ...shared.vocabulary import ATTEMPT_OUTCOMES
from ..chain import Middleware, Reply, error_reply, header_value
from ._support.ai_body import inspect, prompt_chars
from ._support.body_buffer import forward_body
from .ai_provider import Provider
from .retry import Retry

if TYPE_CHECKING:
    from ...shared.errors import UpstreamError
    from ..exchange import Exchange
    from ..process import Worker
    from ..runtime import Backend, Service

OUTCOME = {name: i for i, name in enumerate(ATTEMPT_OUTCOMES)}
CONTEXT_ERRORS = (b"context_length_exceeded", b"maximum context length", b"context window", b"prompt is too long",
                  b"too many tokens", b"context_length")
MAX_RETRY_AFTER = 3600.0


class Target:
    """One entry of ``targets``: where to send, how to adapt the request, how large a prompt it takes."""

    __slots__ = ("index", "max_input_tokens", "model", "provider", "service")

    def __init__(self, index: int, params: dict[str, Any]) -> None:
        self.index = index
        self.service: str = params["service"]
        self.model: str | None = params["model"]
        self.max_input_tokens: int | None = params["max_input_tokens"]
        self.provider = Provider({**params, "models": {"*": params["model"]} if params["model"] else {}})


class AiFallback(Retry):
    chooses = True
    peek_statuses = frozenset((400, 413))

    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        Middleware.__init__(self, name, params, worker)   # not Retry's: its keys are not this type's
        self.targets = [Target(i, t) for i, t in enumerate(params["targets"])]
        self.max_attempts = params["max_attempts"] or len(self.targets)
        self.cooldown = params["cooldown"]
        self.chars_per_token = params["chars_per_token"]
        self.statuses = frozenset((429, *range(500, 600)))
        self.interval = 0.0
        self.exponential = False
        self.replay_limit = 1 << 62          # the body is whole in memory already (ai_body, bounded there)
        self.budget = None
        self.credentials = frozenset().union(*(t.provider.drop for t in self.targets))

    # -- request phase
    def on_request(self, ex: Exchange) -> Any:
        return self.prepare(ex)

    async def prepare(self, ex: Exchange) -> Reply | None:
        got = await inspect(ex)
        if got.__class__ is Reply:
            return got  # type: ignore[return-value]
        if not isinstance(got.doc, dict):  # type: ignore[union-attr]
            return error_reply(400, "An AI request needs a JSON object body", middleware=self.name)
        ex.ai_tokens = math.ceil(prompt_chars(got.doc) / self.chars_per_token)  # type: ignore[union-attr]
        ex.ai_attempts = []
        ex.ai_path = ex.target
        ex.ai_target = -1
        target, skipped = self._next(ex, 0)
        self._skipped(ex, skipped)
        if target is None:
            return self._none_left(ex, skipped)
        for t in self.targets:
            if t.provider.credential is None:
                return error_reply(500, "The provider's API key is not configured", middleware=self.name,
                                   target=t.service)
        ex.retry = self
        ex.replay = bytearray()
        self._use(ex, target)
        return None

    def _next(self, ex: Exchange, start: int) -> tuple[Target | None, list[tuple[Target, str]]]:
        """The first target from ``start`` on that can take ``ex``, and those passed over (with why)."""
        services = ex.runtime.services  # type: ignore[union-attr]
        skipped = []
        for target in self.targets[start:]:
            if target.max_input_tokens is not None and ex.ai_tokens > target.max_input_tokens:
                skipped.append((target, "skipped_context"))
                continue
            service = services[target.service]
            if not any(b.is_healthy() for b in service.backends):
                skipped.append((target, "skipped_cooldown"))
                continue
            return target, skipped
        return None, skipped

    def _none_left(self, ex: Exchange, skipped: list[tuple[Target, str]]) -> Reply:
        if skipped and all(why == "skipped_context" for _, why in skipped):
            return error_reply(400, "The request's estimated input tokens exceed the context window of every "
                               "target", middleware=self.name, estimated_tokens=ex.ai_tokens,
                               code="context_length_exceeded")
        now = time.monotonic()
        plane = self.worker.plane  # type: ignore[union-attr]
        services = ex.runtime.services  # type: ignore[union-attr]
        waits = [plane.down_until(b.idx) - now for t, why in skipped if why == "skipped_cooldown"
                 for b in services[t.service].backends]
        wait = max(1, math.ceil(min((w for w in waits if w > 0), default=1)))
        return error_reply(503, "No target of this model can serve now (cooling down or down)",
                           [(b"Retry-After", b"%d" % wait)], middleware=self.name)

    def _use(self, ex: Exchange, target: Target) -> None:
        """Make ``target`` the attempt's: its service, and the request adapted to its provider."""
        doc = ex.ai_body.doc
        if ex.ai_target >= 0:                # a fallback: start again from the client's request
            ex.target = ex.ai_path
            ex.headers = [h for h in ex.headers if h[0].lower() not in self.credentials]
            forward_body(ex, orjson.dumps(doc))
        ex.ai_target = target.index
        ex.service = ex.runtime.services[target.service]  # type: ignore[union-attr]
        target.provider.apply(ex, doc, ex.ai_body.model)
        ex.ai_attempts.append([target.service, target.model or ex.ai_body.model, None])  # type: ignore[union-attr]

    # -- outcomes
    def _record(self, ex: Exchange, outcome: str, index: int | None = None) -> None:
        """The outcome of the current attempt (once), or of target ``index`` passed over."""
        if index is None:
            attempt = ex.ai_attempts[-1]  # type: ignore[index]
            if attempt[2] is not None:
                return
            attempt[2] = outcome
            index = ex.ai_target
        worker = self.worker
        if worker is not None and worker.plane is not None:
            mw = worker.slots.get("middlewares", {}).get(self.name)
            if mw is not None:
                worker.plane.middleware_attempt(mw, index, OUTCOME[outcome])

    def _skipped(self, ex: Exchange, skipped: list[tuple[Target, str]]) -> None:
        for target, why in skipped:
            ex.ai_attempts.append([target.service, target.model or ex.ai_body.model, why])  # type: ignore[union-attr]
            self._record(ex, why, target.index)

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if ex.ai_attempts and ex.backend is not None:     # not a reply of a later middleware
            self._record(ex, "rate_limited" if status == 429 else "server_error" if status >= 500 else "answered")

    # -- the retry path
    def may_retry(self, ex: Exchange) -> bool:
        """Whether a failed attempt has somewhere to go: attempts left and a target that can take it."""
        if ex.attempts + 1 >= self.max_attempts:
            return False
        ex.ai_next = self._next(ex, ex.ai_target + 1)
        return ex.ai_next[0] is not None

    def _fall_back(self, ex: Exchange, outcome: str) -> bool:
        if not self.may_retry(ex):
            return False
        self._record(ex, outcome)
        ex.attempts += 1
        return True

    def retry_status(self, ex: Exchange, status: int, fields: list[tuple[bytes, bytes]]) -> bool:
        if status == 429:
            self._cool_down(ex, fields)
        return self._fall_back(ex, "rate_limited" if status == 429 else "server_error")

    def retry_error(self, ex: Exchange, error: UpstreamError, reached: bool) -> bool:
        outcome = "timeout" if isinstance(error, UpstreamTimeout) else "connect_error"
        if self._fall_back(ex, outcome):
            return True
        self._record(ex, outcome)
        return False

    def retry_body(self, ex: Exchange, status: int, body: bytes) -> bool:
        """A peeked 400/413: a context-window error falls back, anything else goes to the client."""
        low = body.lower()
        if any(marker in low for marker in CONTEXT_ERRORS):
            return self._fall_back(ex, "context_window")
        return False

    def next_backend(self, ex: Exchange, failed: Backend | None) -> Backend | None:
        target, skipped = ex.ai_next
        self._skipped(ex, skipped)
        self._use(ex, target)
        return ex.service.balancer.pick()  # type: ignore[union-attr]

    def _cool_down(self, ex: Exchange, fields: list[tuple[bytes, bytes]]) -> None:
        """Hold the answering target's backends down for its ``Retry-After``, on every worker."""
        seconds = retry_after(header_value(fields, b"retry-after"), self.cooldown)
        until = time.monotonic() + seconds
        plane = self.worker.plane  # type: ignore[union-attr]
        service: Service = ex.service  # type: ignore[assignment]
        for backend in service.backends:
            plane.hold_down(backend.idx, until)


def retry_after(value: bytes | None, default: float) -> float:
    """Seconds of a ``Retry-After`` value (delay-seconds or an HTTP date), ``default`` without a usable one."""
    if value is None:
        return default
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return default
    return min(max(0.0, when - time.time()), MAX_RETRY_AFTER)
