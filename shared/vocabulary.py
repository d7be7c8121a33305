"""The words of the AI-agent extensions that config, plane, middlewares and metrics must agree on: privacy
levels, token-meter key kinds, request priorities and model (agent) states.

Each is a tuple whose order carries meaning, so every side compares indices, never spellings:
- ``LEVELS``: least to most sensitive; a request at or above ``tee_threshold``'s index goes to the TEE;
- ``KEY_KINDS``: the keys a token budget is counted under; the first three take a ``kind:value`` limit key;
- ``PRIORITIES``: most to least urgent; index 0 is admitted first, and the plane's gauge words follow it;
- ``AGENT_STATES``: the states of ``agent_health``; the plane stores index + 1 (0 = not probed);
- ``DETECTOR_KINDS``: what ``privacy-router``'s detectors find (``detect``), which ``prompt-guard`` can deny.
The plane's AI counter names are built from these tuples: a new word changes the plane layout (``ai.NC``).
"""

from __future__ import annotations

LEVELS = ("public", "internal", "confidential", "restricted")
KEY_KINDS = ("user", "agent", "session", "global")
PRIORITIES = ("critical", "high", "normal", "low", "best-effort")
AGENT_STATES = ("loading", "ready", "busy", "error", "unreachable")
DETECTOR_KINDS = ("card", "ssn", "secret", "iban", "email", "phone")
