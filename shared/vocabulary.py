"""The words of the AI-agent extensions that config, plane, middlewares and metrics must agree on: privacy
levels, token-meter key kinds, request priorities, model (agent) states and ai-fallback attempt outcomes.

Each is a tuple whose order carries meaning, so every side compares indices, never spellings:
- ``LEVELS``: least to most sensitive; a request at or above ``tee_threshold``'s index goes to the TEE;
- ``KEY_KINDS``: the keys a token budget is counted under; all but ``global`` take a ``kind:value`` limit key;
- ``PRIORITIES``: most to least urgent; index 0 is admitted first, and the plane's gauge words follow it;
- ``AGENT_STATES``: the states of ``agent_health``; the plane stores index + 1 (0 = not probed);
- ``DETECTOR_KINDS``: what ``privacy-router``'s detectors find (``detect``), which ``prompt-guard`` can deny.
- ``ATTEMPT_OUTCOMES``: how one ``ai-fallback`` attempt on a target ended (``answered``: its response went to
  the client, whatever its status; the ``skipped_*`` ones: the target was passed over without a request).
The plane's AI counter names are built from these tuples: a new word changes the plane layout (``ai.NC``).
"""

from __future__ import annotations

LEVELS = ("public", "internal", "confidential", "restricted")
KEY_KINDS = ("user", "agent", "session", "key", "team", "model", "global")
PRIORITIES = ("critical", "high", "normal", "low", "best-effort")
AGENT_STATES = ("loading", "ready", "busy", "error", "unreachable")
DETECTOR_KINDS = ("card", "ssn", "secret", "iban", "email", "phone")
ATTEMPT_OUTCOMES = ("answered", "rate_limited", "server_error", "context_window", "connect_error", "timeout",
                    "skipped_context", "skipped_cooldown")
