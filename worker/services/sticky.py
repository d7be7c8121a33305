"""Sticky sessions: a cookie pins a client to one backend of a service, in every worker.

The cookie carries a random session id, never a backend address. The id → backend binding lives on the
shared-memory plane (``plane.sticky_*``), so a cookie issued by one worker routes the same way in all of them,
and the table is bounded (the plane evicts the binding that expires soonest when a bucket is full).

``pick`` keeps the invariant "a request goes to its bound backend while that backend is healthy and still in
the service": otherwise the balancer picks again and the same id is re-bound (the client keeps its cookie).
A request without a cookie gets a new id, bound to the balancer's pick, and a ``Set-Cookie`` on the response.
Each use slides the binding's expiry forward by ``ttl``.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...shared.plane import Plane
    from ..runtime import Backend
    from .balancer import Balancer


def cookie_attributes(cfg: dict[str, Any]) -> bytes:
    """The attributes of a ``Set-Cookie`` for a ``sticky`` table (``ttl`` is its Max-Age)."""
    attrs = [b"Path=/", b"Max-Age=%d" % int(cfg["ttl"]), b"SameSite=" + cfg["same_site"].capitalize().encode()]
    if cfg["http_only"]:
        attrs.append(b"HttpOnly")
    if cfg["secure"] or cfg["same_site"] == "none":
        attrs.append(b"Secure")              # browsers refuse SameSite=None without Secure
    return b"; ".join(attrs)


def cookie_value(headers: list[tuple[bytes, bytes]], cookie: bytes) -> bytes | None:
    """The first non-empty value of the cookie named ``cookie`` in the request's Cookie headers."""
    name = cookie + b"="
    for hname, value in headers:
        if hname.lower() != b"cookie":
            continue
        for part in value.split(b";"):
            part = part.strip()
            if part.startswith(name) and len(part) > len(name):
                return part[len(name):]
    return None


class Sticky:
    def __init__(self, cfg: dict[str, Any], service_idx: int, backends: list[Backend], balancer: Balancer,
                 plane: Plane) -> None:
        self.cookie = cfg["cookie"].encode()
        self.ttl = float(cfg["ttl"])
        self.balancer = balancer
        self.plane = plane
        self.by_idx = {b.idx: b for b in backends}
        self.prefix = b"%d:" % service_idx            # bindings are per service
        self.attrs = cookie_attributes(cfg)

    def pick(self, headers: list[tuple[bytes, bytes]], now: float) -> tuple[Backend | None, bytes | None]:
        """(backend, the value of a Set-Cookie to add to the response, or None)."""
        sid = cookie_value(headers, self.cookie)
        plane = self.plane
        if sid is not None:
            key = self.prefix + sid
            bound = self.by_idx.get(plane.sticky_get(key, now))  # type: ignore[arg-type]
            if bound is not None and bound.is_healthy():
                plane.sticky_bind(key, bound.idx, now, self.ttl)
                return bound, None
            backend = self.balancer.pick()
            if backend is not None:
                plane.sticky_bind(key, backend.idx, now, self.ttl)
            return backend, None
        backend = self.balancer.pick()
        if backend is None:
            return None, None
        sid = secrets.token_urlsafe(18).encode()
        plane.sticky_bind(self.prefix + sid, backend.idx, now, self.ttl)
        return backend, b"%s=%s; %s" % (self.cookie, sid, self.attrs)
