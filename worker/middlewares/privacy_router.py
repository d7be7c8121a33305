"""``privacy-router``: classify a request's content and send sensitive requests to a private (TEE) service.

Levels (spec §11.2): ``public`` < ``internal`` < ``confidential`` < ``restricted``. A request's level is the
highest of:
- the original's keyword classes (substring, lowercase): ``ssn``, ``social security``, ``credit card``,
  ``password``, ``api key``, ``api_key``, ``secret key``, ``medical``, ``passport``, ``diagnosis`` →
  restricted; ``my name``, ``phone number``, ``address``, ``live at`` → internal;
- ``sensitive_keywords`` and ``sensitive_patterns`` (regexes) → the ``tee_threshold`` level (as the original);
- detectors: payment card numbers that pass the Luhn check, US SSNs (area/group/serial rules), API keys and
  secrets (well-known prefixes, PEM private keys, long high-entropy tokens) → restricted; IBANs that pass
  the ISO 13616 mod-97 check → confidential; e-mail addresses and phone numbers (10-15 digits) → internal.

Only the first ``max_inspect_bytes`` of the body (and the headers named in ``inspect_headers``) are read;
a longer body is classified on that prefix and the rest streams through untouched. At or above
``tee_threshold`` the request goes to ``tee_service`` instead of the router's service; below it, with
``redact = true``, detected spans are replaced by ``[REDACTED:<kind>]`` (only when the whole body was
inspected). ``X-Privacy-Level`` (``privacy_header``) upstream always carries the gateway's decision: a
client's copy is dropped. Decisions are counted by level on the shared-memory plane (metrics) and logged
at debug level.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from ...shared import log as gwlog
from ...shared.vocabulary import LEVELS
from ..chain import Middleware, Reply, error_reply
from ._support.body_buffer import forward_body, read_prefix, restore_prefix

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

log = gwlog.get("worker.ai")

PUBLIC, INTERNAL, CONFIDENTIAL, RESTRICTED = range(4)
RESTRICTED_WORDS = ("ssn", "social security", "credit card", "password", "api key", "api_key", "secret key",
                    "medical", "passport", "diagnosis")
INTERNAL_WORDS = ("my name", "phone number", "address", "live at")

CARD = re.compile(r"(?<![\d-])(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -]?)\d{6}\2\d{5}|\d{13,19})(?![\d-])")
SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{8,}\d(?!\w)")
KEY_PREFIXED = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
    r"|glpat-[A-Za-z0-9_-]{20,})"
    r"|-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{32,}")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    s = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in s)) % 97 == 1
    except ValueError:
        return False


def entropy(s: str) -> float:
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    n = len(s)
    return -sum(v / n * math.log2(v / n) for v in counts.values())


def detect(text: str) -> list[tuple[int, int, str, int]]:
    """(start, end, kind, level) of every detector hit in ``text``."""
    hits: list[tuple[int, int, str, int]] = []
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn(digits):
            hits.append((m.start(), m.end(), "card", RESTRICTED))
    hits += [(m.start(), m.end(), "ssn", RESTRICTED) for m in SSN.finditer(text)]
    hits += [(m.start(), m.end(), "secret", RESTRICTED) for m in KEY_PREFIXED.finditer(text)]
    for m in TOKEN.finditer(text):
        tok = m.group()
        if (any(c.isdigit() for c in tok) and any(c.isupper() for c in tok) and any(c.islower() for c in tok)
                and entropy(tok) >= 4.2):
            hits.append((m.start(), m.end(), "secret", RESTRICTED))
    hits += [(m.start(), m.end(), "iban", CONFIDENTIAL) for m in IBAN.finditer(text) if iban_ok(m.group())]
    hits += [(m.start(), m.end(), "email", INTERNAL) for m in EMAIL.finditer(text)]
    for m in PHONE.finditer(text):
        n = sum(c.isdigit() for c in m.group())
        if 10 <= n <= 15 and not any(h[0] <= m.start() < h[1] for h in hits):
            hits.append((m.start(), m.end(), "phone", INTERNAL))
    return hits


class PrivacyRouter(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.threshold = LEVELS.index(params["tee_threshold"])
        self.tee_service = params["tee_service"]
        self.keywords = [k.lower() for k in params["sensitive_keywords"]]
        self.patterns = [re.compile(p) for p in params["sensitive_patterns"]]
        self.inspect_headers = frozenset(h.lower().encode() for h in params["inspect_headers"])
        self.max_inspect = params["max_inspect_bytes"]
        self.redact = params["redact"]
        self.header = params["privacy_header"].encode()
        self.header_l = self.header.lower()

    def classify(self, text: str) -> tuple[int, list[tuple[int, int, str, int]]]:
        low = text.lower()
        level = PUBLIC
        if any(w in low for w in RESTRICTED_WORDS):
            level = RESTRICTED
        elif any(k in low for k in self.keywords) or any(p.search(text) for p in self.patterns):
            level = self.threshold
        elif any(w in low for w in INTERNAL_WORDS):
            level = INTERNAL
        if level == RESTRICTED and not self.redact:
            return level, []        # nothing can rank higher and nothing is rewritten: skip the detectors
        if level < self.threshold and any(k in low for k in self.keywords):
            level = self.threshold
        hits = detect(text)
        for h in hits:
            level = max(level, h[3])
        return level, hits

    def on_request(self, ex: Exchange) -> Any:
        return self.route(ex)

    async def route(self, ex: Exchange) -> Reply | None:
        texts = [v.decode("latin-1") for n, v in ex.headers if n.lower() in self.inspect_headers]
        body, complete = b"", True
        if ex.req_has_body or ex.pending:
            got = await read_prefix(ex, self.max_inspect)
            if got.__class__ is Reply:
                return got  # type: ignore[return-value]
            body, complete = got  # type: ignore[misc]
        text = body[: self.max_inspect].decode("utf-8", "replace")
        level, hits = self.classify("\n".join([*texts, text]))
        if level < self.threshold and self.redact and complete and hits:
            offset = sum(len(t) + 1 for t in texts)
            body_hits = sorted((s - offset, e - offset, k) for s, e, k, _ in hits if s >= offset)
            out, pos = [], 0
            for s, e, kind in body_hits:
                if s < pos:
                    continue
                out += [text[pos:s], f"[REDACTED:{kind}]"]
                pos = e
            out.append(text[pos:])
            body = "".join(out).encode()
            if self.worker is not None:
                self.worker.plane.ai_add("privacy_redacted")
        if complete:
            if body or ex.req_has_body:
                forward_body(ex, body)
        else:
            restore_prefix(ex, body)
        ex.headers = [h for h in ex.headers if h[0].lower() != self.header_l]
        ex.headers.append((self.header, LEVELS[level].encode()))
        if self.worker is not None:
            self.worker.plane.ai_add("privacy_" + LEVELS[level])
        if level >= self.threshold:
            service = ex.runtime.services.get(self.tee_service) if ex.runtime is not None else None
            if service is None:
                return error_reply(503, "Privacy routing target is not configured", service=self.tee_service)
            ex.service = service
            if self.worker is not None:
                self.worker.plane.ai_add("privacy_tee_routed")
        log.debug("privacy decision", extra={"fields": {"level": LEVELS[level], "tee": level >= self.threshold,
                                                        "kinds": sorted({h[2] for h in hits})}})
        return None
