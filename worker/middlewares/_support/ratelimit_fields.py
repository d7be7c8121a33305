"""The rate-limit header fields of ``rate-limit`` and ``rate-limit-redis`` rejections (one vocabulary for both).

We send the IETF fields of draft-ietf-httpapi-ratelimit-headers (structured fields, RFC 9651) rather than the
unstandardized ``X-RateLimit-*`` ones, whose meaning differs between vendors (ours used to report the burst as
the "limit"):

    RateLimit-Policy: "<middleware name>";q=<quota>;w=<window seconds>
    RateLimit: "<middleware name>";r=<remaining>;t=<seconds until a request is admitted again>

The policy is the sustained rate, ``rate`` requests per ``period`` (a period under a second, or not a whole
number of seconds, is stated per whole second: ``w`` is an integer); the bucket's ``burst`` is how far a client
may run ahead of it, which the draft has no parameter for. ``Retry-After`` stays, with the same seconds as ``t``,
for clients that only know RFC 9110. The fields come with 429 answers only: admitted requests pay nothing on the
hot path, and a backend's own ``RateLimit`` fields reach the client untouched.
"""

from __future__ import annotations

import math


def _sf_string(value: str) -> bytes:
    return b'"%s"' % value.replace("\\", "\\\\").replace('"', '\\"').encode("ascii", "replace")


class RateLimitFields:
    """One limiter's fields, pre-encoded at build time; only ``r`` and ``t`` vary per rejection."""

    __slots__ = ("item", "policy")

    def __init__(self, name: str, rate: float, period: float) -> None:
        self.item = _sf_string(name)
        window = max(1, math.ceil(period))
        quota = round(rate * window / period)
        self.policy = (b"RateLimit-Policy", b"%s;q=%d;w=%d" % (self.item, quota, window))

    def rejected(self, retry_after: float, remaining: float = 0) -> list[tuple[bytes, bytes]]:
        """``Retry-After``, ``RateLimit-Policy`` and ``RateLimit`` of a 429 (``retry_after`` in seconds)."""
        seconds = max(1, math.ceil(retry_after))
        return [(b"Retry-After", b"%d" % seconds), self.policy,
                (b"RateLimit", b"%s;r=%d;t=%d" % (self.item, max(0, int(remaining)), seconds))]
