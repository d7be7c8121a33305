"""GRPCRoute (Gateway API v1) matches → the gateway's rules, and their precedence.

A gRPC call is an HTTP/2 POST to ``/<service>/<method>`` with a ``content-type`` of ``application/grpc``
(``+proto``, ``+json``…), so a method match is a path match and every GRPCRoute rule also requires that
content type: a GRPCRoute never takes a plain HTTP request on a hostname it shares with an HTTPRoute.
Backends of a GRPCRoute are spoken to over h2c (``gateway.py``), as gRPC needs HTTP/2.

Invariants:
* ``Exact`` with service and method is ``Path``; service only is ``PathPrefix(/service/)``; method only, or
  ``RegularExpression``, is an anchored ``PathRegexp`` in which a missing part matches one path segment;
* precedence (GEP-1016, after the hostname): the longer matched service, then the longer matched method, then
  more header matches; the rank tuple has the HTTPRoute rank's shape (``gateway.PATH_RANK`` first) so both kinds
  sort in one total order.
"""

from __future__ import annotations

import re
from typing import Any

from lightkube.generic_resource import create_namespaced_resource

GROUP = "gateway.networking.k8s.io"
GRPCRoute = create_namespaced_resource(GROUP, "v1", "GRPCRoute", "grpcroutes")
GRPC_CONTENT_TYPE = "HeaderRegexp(`Content-Type`, `application/grpc([+;].*)?`)"
SEGMENT = "[^/]+"


def grpc_matcher(match: dict[str, Any], quoted: Any) -> tuple[str, tuple[int, ...]]:
    """A GRPCRoute match's rule and its precedence (``quoted`` writes rule arguments)."""
    method = match.get("method") or {}
    kind = method.get("type") or "Exact"
    service, name = method.get("service") or "", method.get("method") or ""
    if kind not in ("Exact", "RegularExpression"):
        raise ValueError(f"method match type {kind} is not supported")
    terms = [GRPC_CONTENT_TYPE]
    if kind == "Exact" and service and name:
        terms.append(f"Path({quoted(f'/{service}/{name}')})")
    elif kind == "Exact" and service:
        terms.append(f"PathPrefix({quoted(f'/{service}/')})")
    elif service or name:
        svc = service if kind == "RegularExpression" else re.escape(service)
        meth = name if kind == "RegularExpression" else re.escape(name)
        terms.append(f"PathRegexp({quoted(f'/(?:{svc or SEGMENT})/(?:{meth or SEGMENT})$')})")
    for header in match.get("headers") or []:
        regex = header.get("type") == "RegularExpression"
        terms.append(f"{'HeaderRegexp' if regex else 'Header'}({quoted(header['name'], header['value'])})")
    exact = kind == "Exact" and bool(service and name)
    return " && ".join(terms), (2 if exact else 1, len(service), len(name), len(match.get("headers") or []), 0)
