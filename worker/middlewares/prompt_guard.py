"""``prompt-guard``: refuse prompts by regular expression and by the ``privacy-router`` detectors.

What is inspected: the text of the last user message (``messages = "last-user"``), of every user message
(``"user"``) or of every message whatever its role (``"all"``), read from the JSON body (``ai_body.inspect``,
bounded by ``[limits] model_inspect_bytes``; ``_support/prompt_text.py`` knows the body shapes).

The decision, deny first: a text matching any ``deny_patterns`` regex, or in which a detector named in
``detectors`` finds something (``privacy_router.detect``: Luhn-checked cards, SSNs, secrets, IBANs, e-mail
addresses, phone numbers), is refused even when an allow pattern matches too; then, when ``allow_patterns``
is set, the inspected text (the texts joined by newlines) must match one of them. A refusal is 403 with a
JSON body naming the reason and never reaches the upstream; it names a detector's kind or a pattern's
position in its list, never the prompt. A body that is not JSON is 400, one over the inspection limit 413,
a JSON body without ``messages``, ``prompt`` or ``input`` 400; a request without a body passes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply, error_reply
from ._support.ai_body import inspect
from ._support.prompt_text import messages, select
from .privacy_router import detect

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

REFUSED = "Prompt refused by the prompt guard"


class PromptGuard(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.allow = [re.compile(p) for p in params["allow_patterns"]]
        self.deny = [re.compile(p) for p in params["deny_patterns"]]
        self.detectors = frozenset(params["detectors"])
        self.scope = params["messages"]

    def on_request(self, ex: Exchange) -> Any:
        if not (ex.req_has_body or ex.pending):
            return None
        return self.check(ex)

    async def check(self, ex: Exchange) -> Reply | None:
        got = await inspect(ex)
        if got.__class__ is Reply:
            return got  # type: ignore[return-value]
        doc = got.doc  # type: ignore[union-attr]
        if doc is None:
            return None
        items = messages(doc) if isinstance(doc, dict) else None
        if items is None:
            return error_reply(400, "Request body has no 'messages', 'prompt' or 'input' for the prompt guard "
                               "to inspect", middleware=self.name)
        texts = select(items, self.scope)
        refusal = self.judge(texts)
        if refusal is None:
            return None
        reason, fields = refusal
        if self.worker is not None:
            self.worker.plane.ai_add("guard_" + reason)
        return error_reply(403, REFUSED, middleware=self.name, reason=reason, **fields)

    def judge(self, texts: list[str]) -> tuple[str, dict[str, object]] | None:
        """None to let the request through, else (reason, fields of the 403 body)."""
        for text in texts:
            for i, pattern in enumerate(self.deny):
                if pattern.search(text):
                    return "denied_pattern", {"pattern": i}
            if self.detectors:
                kinds = sorted({kind for _, _, kind, _ in detect(text) if kind in self.detectors})
                if kinds:
                    return "denied_detector", {"detectors": kinds}
        if self.allow:
            joined = "\n".join(texts)
            if not any(p.search(joined) for p in self.allow):
                return "not_allowed", {}
        return None
