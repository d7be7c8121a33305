"""Conversation affinity: requests of one conversation go to the same backend of a service, from every worker.

The conversation id comes from a request header (``header``, default ``X-Conversation-Id``, matched
case-insensitively, unlike the original whose lookup never matched real traffic) or, when absent, from the
cookie ``cookie`` (first non-empty value). The id → backend binding lives on the shared-memory plane's
bounded sticky table (namespaced ``aff:<service>:``) with ``ttl`` sliding on every use, so all workers agree
and memory is fixed. A bound backend that is unhealthy (active or passive health, or a model probe state
other than ``ready``) or gone from the service is replaced by the balancer's pick and the id is re-bound.
Requests without an id are balanced normally.

``pick`` has the ``Sticky.pick`` signature (backend, Set-Cookie line) so the proxy treats both alike; when
``busy_fallback`` is set (a service with ``agent_health``) and no backend is ready, a ``busy`` one is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...shared.plane import Plane
    from ..runtime import Backend
    from .balancer import Balancer


class Affinity:
    def __init__(self, cfg: dict[str, Any] | None, service_idx: int, backends: list[Backend], balancer: Balancer,
                 plane: Plane, busy_fallback: bool = False) -> None:
        self.enabled = cfg is not None
        cfg = cfg or {}
        self.header = (cfg.get("header") or "X-Conversation-Id").lower().encode()
        self.cookie = cfg["cookie"].encode() + b"=" if cfg.get("cookie") else None
        self.ttl = float(cfg.get("ttl") or 1800.0)
        self.balancer = balancer
        self.plane = plane
        self.backends = backends
        self.by_idx = {b.idx: b for b in backends}
        self.prefix = b"aff:%d:" % service_idx
        self.busy_fallback = busy_fallback
        self._rr = 0

    def conversation(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        cookie_value = None
        for name, value in headers:
            ln = name.lower()
            if ln == self.header and value.strip():
                return value.strip()
            if self.cookie is not None and ln == b"cookie" and cookie_value is None:
                for part in value.split(b";"):
                    part = part.strip()
                    if part.startswith(self.cookie) and part[len(self.cookie):].strip():
                        cookie_value = part[len(self.cookie):].strip()
                        break
        return cookie_value

    def _balanced(self) -> Backend | None:
        backend = self.balancer.pick()
        if backend is None and self.busy_fallback:
            busy = [b for b in self.backends if self.plane.agent_state(b.idx) == "busy"]
            if busy:
                self._rr += 1
                backend = busy[self._rr % len(busy)]
        return backend

    def pick(self, headers: list[tuple[bytes, bytes]], now: float) -> tuple[Backend | None, bytes | None]:
        conv = self.conversation(headers) if self.enabled else None
        if conv is None:
            return self._balanced(), None
        key = self.prefix + conv
        plane = self.plane
        bound = self.by_idx.get(plane.sticky_get(key, now))  # type: ignore[arg-type]
        if bound is not None and bound.is_healthy():
            plane.sticky_bind(key, bound.idx, now, self.ttl)
            return bound, None
        backend = self._balanced()
        if backend is not None:
            plane.sticky_bind(key, backend.idx, now, self.ttl)
        return backend, None
