"""Routing: pick the router whose rule matches a request, per entrypoint.

A ``RouterTable`` is built once per generation and entrypoint. Routers are ordered by priority (higher first;
default priority = rule length, as in Traefik) and then by name, so the order is deterministic. Rules that
can only match a fixed set of hosts (``Rule.hosts``) are indexed by host: a request is tested only against
the routers for its host plus the host-independent ones, merged in global order once at build time.

``RequestView`` is what rules see. Header and query maps are built lazily: most rules only look at host,
path and method, and building a dict per request would cost more than matching. ``model`` is the JSON body's
``model`` (``Model()`` rules): the exchange reads the body first only when ``RouterTable.needs_body`` says a
candidate router of the request's host uses ``Model()`` (``worker/exchange.py``, docs/ai/model-routing.md).
Compiled, both are native classes (``router.pxd``) and a rule's test is a C call (``shared/rules/matchers.pxd``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs


class RequestView:
    __slots__ = ("host", "path", "method", "raw_headers", "raw_query", "client_ip", "model", "_headers", "_query")

    def __init__(self, host: str, path: str, method: str, raw_headers: list[tuple[bytes, bytes]],
                 raw_query: bytes, client_ip: str) -> None:
        self.host = host
        self.path = path
        self.method = method
        self.raw_headers = raw_headers
        self.raw_query = raw_query
        self.client_ip = client_ip
        self.model: str | None = None
        self._headers: dict[str, list[str]] | None = None
        self._query: dict[str, list[str]] | None = None

    @property
    def headers(self) -> dict[str, list[str]]:
        if self._headers is None:
            h: dict[str, list[str]] = {}
            for name, value in self.raw_headers:
                h.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
            self._headers = h
        return self._headers

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_qs(self.raw_query.decode("latin-1"), keep_blank_values=True)
        return self._query


class RouterTable:
    """The routers of one entrypoint, ready for matching: per host, the (rule predicate, route) pairs to test."""

    def __init__(self, routes: Iterable[Any]) -> None:
        ordered = sorted(routes, key=lambda r: (-r.priority, r.name))
        self.generic = [(r.rule.predicate, r) for r in ordered if r.rule.hosts is None]
        hosts: set[str] = set()
        for r in ordered:
            if r.rule.hosts is not None:
                hosts.update(r.rule.hosts)
        self.by_host = {
            h: [(r.rule.predicate, r) for r in ordered if r.rule.hosts is None or h in r.rule.hosts] for h in hosts
        }
        self.generic_body = any(r.rule.needs_body for _, r in self.generic)
        self.body_hosts = frozenset(h for h, rs in self.by_host.items() if any(r.rule.needs_body for _, r in rs))

    def needs_body(self, host: str) -> bool:
        """Whether a router that ``host``'s requests are tested against uses ``Model()``."""
        return host in self.body_hosts if host in self.by_host else self.generic_body

    def match(self, req: RequestView) -> Any | None:
        candidates = self.by_host.get(req.host)
        for predicate, route in self.generic if candidates is None else candidates:
            if predicate.test(req):
                return route
        return None
