"""Request → backend expectations of the upstream Gateway API conformance suite's HTTPRoute tests
(kubernetes-sigs/gateway-api ``conformance/tests/httproute-*``), restated as data: each case names the upstream
test, the routes it applies (in this suite's compact builders), and what each request must get.

A check is a dict: the request (``path``, ``host`` (default ``a.test``), ``headers``, ``method``) and what must come
back: ``backend`` (the answering backend's name) or ``status``; optionally ``backend_path`` (the path the backend
saw), ``seen`` (request headers the backend saw, joined with ``,``), ``absent`` (request headers it must not
see), ``response`` (response headers), ``location`` (a redirect's target, ``{host}`` for the request's host).
Backends ``v1``, ``v2``, ``v3`` stand in for ``infra-backend-v1..3``; the Gateway is ``same-namespace``.
"""

from __future__ import annotations

from typing import Any

from gateway_support import exact, headers, http_route, prefix, query, route_rule


def rule(matches: list[dict[str, Any]] | None, backend: str | None, *filters: dict[str, Any]) -> dict[str, Any]:
    return route_rule(matches, *([backend] if backend else []), filters=list(filters))


def match(*parts: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """One match: the union of path / headers / queryParams parts (and a method)."""
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    if method:
        out["method"] = method
    return out


def header_mod(kind: str, set_: dict[str, str] | None = None, add: dict[str, str] | None = None,
               remove: list[str] | None = None) -> dict[str, Any]:
    key = kind[0].lower() + kind[1:]
    return {"type": kind, key: {"set": [{"name": k, "value": v} for k, v in (set_ or {}).items()],
                                "add": [{"name": k, "value": v} for k, v in (add or {}).items()],
                                "remove": remove or []}}


def redirect(**spec: Any) -> dict[str, Any]:
    return {"type": "RequestRedirect", "requestRedirect": spec}


def rewrite(**spec: Any) -> dict[str, Any]:
    return {"type": "URLRewrite", "urlRewrite": spec}


def replace_prefix(value: str) -> dict[str, str]:
    return {"type": "ReplacePrefixMatch", "replacePrefixMatch": value}


def replace_full(value: str) -> dict[str, str]:
    return {"type": "ReplaceFullPath", "replaceFullPath": value}


CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("HTTPRouteMatching", [http_route("matching", [
        rule([prefix("/"), headers(version="one")], "v1"),
        rule([prefix("/v2"), headers(version="two")], "v2")])], [
        {"path": "/", "backend": "v1"}, {"path": "/example", "backend": "v1"},
        {"path": "/", "headers": {"Version": "one"}, "backend": "v1"}, {"path": "/v2", "backend": "v2"},
        {"path": "/v2/example", "backend": "v2"}, {"path": "/", "headers": {"Version": "two"}, "backend": "v2"},
        {"path": "/v2/", "backend": "v2"}, {"path": "/v2example", "backend": "v1"},
        {"path": "/foo/v2/example", "backend": "v1"}]),
    ("HTTPRouteMatchingAcrossRoutes", [
        http_route("matching-part1", [rule([prefix("/"), headers(version="one")], "v1")],
                   hostnames=["example.com", "example.net"], created="2024-01-01T00:00:00Z"),
        http_route("matching-part2", [rule([prefix("/v2"), headers(version="two")], "v2")],
                   hostnames=["example.com"], created="2024-01-02T00:00:00Z")], [
        {"host": "example.com", "path": "/", "backend": "v1"},
        {"host": "example.com", "path": "/example", "backend": "v1"},
        {"host": "example.net", "path": "/example", "backend": "v1"},
        {"host": "example.com", "path": "/example", "headers": {"Version": "one"}, "backend": "v1"},
        {"host": "example.com", "path": "/v2", "backend": "v2"},
        {"host": "example.net", "path": "/v2", "backend": "v1"},
        {"host": "example.com", "path": "/v2/example", "backend": "v2"},
        {"host": "example.com", "path": "/", "headers": {"Version": "two"}, "backend": "v2"}]),
    ("HTTPRoutePathMatchOrder", [http_route("path-matching-order", [
        rule([exact("/match")], "v1"), rule([exact("/match/exact")], "v2"), rule([exact("/match/exact/one")], "v3"),
        rule([prefix("/match/")], "v3"), rule([prefix("/match/prefix/")], "v1"),
        rule([prefix("/match/prefix/one")], "v2")])], [
        {"path": "/match/exact/one", "backend": "v3"}, {"path": "/match/exact", "backend": "v2"},
        {"path": "/match", "backend": "v1"}, {"path": "/match/prefix/one/any", "backend": "v2"},
        {"path": "/match/prefix/any", "backend": "v1"}, {"path": "/match/any", "backend": "v3"}]),
    ("HTTPRouteExactPathMatching", [http_route("exact-matching", [
        rule([exact("/one")], "v1"), rule([exact("/two")], "v2")])], [
        {"path": "/one", "backend": "v1"}, {"path": "/two", "backend": "v2"}, {"path": "/", "status": 404},
        {"path": "/one/example", "status": 404}, {"path": "/two/", "status": 404}, {"path": "/Two", "status": 404}]),
    ("HTTPRouteHeaderMatching", [http_route("header-matching", [
        rule([headers(version="one")], "v1"), rule([headers(version="two")], "v2"),
        rule([headers(version="two", color="orange")], "v1"),
        rule([headers(color="blue"), headers(color="green")], "v1"),
        rule([headers(color="red"), headers(color="yellow")], "v2")])], [
        {"headers": {"Version": "one"}, "backend": "v1"}, {"headers": {"Version": "two"}, "backend": "v2"},
        {"headers": {"Version": "two", "Color": "orange"}, "backend": "v1"},
        {"headers": {"Version": "two", "Color": "blue"}, "backend": "v2"},
        {"headers": {"Color": "orange"}, "status": 404}, {"headers": {"Some-Other-Header": "one"}, "status": 404},
        {"headers": {"Color": "blue"}, "backend": "v1"}, {"headers": {"Color": "green"}, "backend": "v1"},
        {"headers": {"Color": "red"}, "backend": "v2"}, {"headers": {"Color": "yellow"}, "backend": "v2"},
        {"headers": {"Color": "purple"}, "status": 404}]),
    ("HTTPRouteQueryParamMatching", [http_route("query-param-matching", [
        rule([query(animal="whale")], "v1"), rule([query(animal="dolphin")], "v2"),
        rule([query(animal="dolphin", color="blue"), query(ANIMAL="Whale")], "v3"),
        rule([match(prefix("/path1"), query(animal="whale"))], "v1"),
        rule([match(headers(version="one"), query(animal="whale"))], "v2"),
        rule([match(prefix("/path2"), headers(version="two"), query(animal="whale"))], "v3"),
        rule([match(prefix("/path3"), query(animal="shark")),
              match(prefix("/path4"), headers(version="three"), query(animal="kraken"))], "v1"),
        rule([prefix("/path5")], "v1"), rule([query(animal="hydra")], "v2"),
        rule([headers(version="four")], "v3")])], [
        {"path": "/?animal=whale", "backend": "v1"}, {"path": "/?animal=dolphin", "backend": "v2"},
        {"path": "/?animal=dolphin&color=blue", "backend": "v3"}, {"path": "/?ANIMAL=Whale", "backend": "v3"},
        {"path": "/?animal=whale&otherparam=irrelevant", "backend": "v1"},
        {"path": "/?animal=dolphin&color=yellow", "backend": "v2"}, {"path": "/?color=blue", "status": 404},
        {"path": "/?animal=dog", "status": 404}, {"path": "/?animal=whaledolphin", "status": 404},
        {"path": "/", "status": 404}, {"path": "/path1?animal=whale", "backend": "v1"},
        {"path": "/?animal=whale", "headers": {"version": "one"}, "backend": "v2"},
        {"path": "/path2?animal=whale", "headers": {"version": "two"}, "backend": "v3"},
        {"path": "/path3?animal=shark", "backend": "v1"},
        {"path": "/path4?animal=kraken", "headers": {"version": "three"}, "backend": "v1"},
        {"path": "/?animal=shark", "status": 404}, {"path": "/path4?animal=kraken", "status": 404},
        {"path": "/path5?animal=hydra", "backend": "v1"},
        {"path": "/?animal=hydra", "headers": {"version": "four"}, "backend": "v3"}]),
    ("HTTPRouteMethodMatching", [http_route("method-matching", [
        rule([match(method="POST")], "v1"), rule([match(method="GET")], "v2"),
        rule([match(prefix("/path1"), method="GET")], "v1"),
        rule([match(headers(version="one"), method="PUT")], "v2"),
        rule([match(prefix("/path2"), headers(version="two"), method="POST")], "v3"),
        rule([match(prefix("/path3"), method="PATCH"),
              match(prefix("/path4"), headers(version="three"), method="DELETE")], "v1"),
        rule([prefix("/path5")], "v1"), rule([match(method="PATCH")], "v2"),
        rule([headers(version="four")], "v3")])], [
        {"method": "POST", "backend": "v1"}, {"method": "GET", "backend": "v2"}, {"method": "HEAD", "status": 404},
        {"path": "/path1", "method": "GET", "backend": "v1"},
        {"headers": {"version": "one"}, "method": "PUT", "backend": "v2"},
        {"path": "/path2", "headers": {"version": "two"}, "method": "POST", "backend": "v3"},
        {"path": "/path3", "method": "PATCH", "backend": "v1"},
        {"path": "/path4", "headers": {"version": "three"}, "method": "DELETE", "backend": "v1"},
        {"method": "PUT", "status": 404}, {"path": "/path4", "method": "DELETE", "status": 404},
        {"path": "/path5", "method": "PATCH", "backend": "v1"},
        {"headers": {"version": "four"}, "method": "PATCH", "backend": "v2"}]),
    ("HTTPRouteRequestHeaderModifier", [http_route("request-header-modifier", [
        rule([prefix("/set")], "v1",
             header_mod("RequestHeaderModifier", set_={"X-Header-Set": "set-overwrites-values"})),
        rule([prefix("/add")], "v1", header_mod("RequestHeaderModifier", add={"X-Header-Add": "add-appends-values"})),
        rule([prefix("/remove")], "v1", header_mod("RequestHeaderModifier", remove=["X-Header-Remove"]))])], [
        {"path": "/set", "headers": {"Some-Other-Header": "val"}, "backend": "v1",
         "seen": {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}},
        {"path": "/set", "headers": {"X-Header-Set": "some-other-value"}, "backend": "v1",
         "seen": {"X-Header-Set": "set-overwrites-values"}},
        {"path": "/add", "headers": {"Some-Other-Header": "val"}, "backend": "v1",
         "seen": {"X-Header-Add": "add-appends-values"}},
        {"path": "/add", "headers": {"X-Header-Add": "some-other-value"}, "backend": "v1",
         "seen": {"X-Header-Add": "some-other-value,add-appends-values"}},
        {"path": "/remove", "headers": {"X-Header-Remove": "val"}, "backend": "v1", "absent": ["X-Header-Remove"]}]),
    ("HTTPRouteResponseHeaderModifier", [http_route("response-header-modifier", [
        rule([prefix("/set")], "v1", header_mod("ResponseHeaderModifier", set_={"X-Backend": "overwritten"})),
        rule([prefix("/add")], "v1", header_mod("ResponseHeaderModifier", add={"X-Header-Add": "add-appends-values"})),
        rule([prefix("/remove")], "v1", header_mod("ResponseHeaderModifier", remove=["X-Backend"]))])], [
        {"path": "/set", "backend": "v1", "response": {"X-Backend": "overwritten"}},
        {"path": "/add", "backend": "v1", "response": {"X-Header-Add": "add-appends-values", "X-Backend": "v1"}},
        {"path": "/remove", "backend": "v1", "response": {"X-Backend": None}}]),
    ("HTTPRouteRewritePath", [http_route("rewrite-path", [
        rule([prefix("/prefix/one")], "v1", rewrite(path=replace_prefix("/one"))),
        rule([prefix("/strip-prefix")], "v1", rewrite(path=replace_prefix("/"))),
        rule([prefix("/full/one")], "v1", rewrite(path=replace_full("/one"))),
        rule([prefix("/full/rewrite-path-and-modify-headers")], "v1", rewrite(path=replace_full("/test")),
             header_mod("RequestHeaderModifier", set_={"X-Header-Set": "set-overwrites-values"},
                        add={"X-Header-Add-Append": "header-val-2"}, remove=["X-Header-Remove"]))])], [
        {"path": "/prefix/one/two", "backend": "v1", "backend_path": "/one/two"},
        {"path": "/strip-prefix/three", "backend": "v1", "backend_path": "/three"},
        {"path": "/strip-prefix", "backend": "v1", "backend_path": "/"},
        {"path": "/full/one/two", "backend": "v1", "backend_path": "/one"},
        {"path": "/full/rewrite-path-and-modify-headers/test", "backend": "v1", "backend_path": "/test",
         "headers": {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1", "X-Header-Set": "x"},
         "seen": {"X-Header-Add-Append": "append-val-1,header-val-2", "X-Header-Set": "set-overwrites-values"},
         "absent": ["X-Header-Remove"]}]),
    ("HTTPRouteRewritePathPrefixTable (GEP-726 HTTPPathModifier)", [http_route("rewrite-prefix-table", [
        rule([prefix("/foo")], "v1", rewrite(path=replace_prefix("/xyz"))),
        rule([prefix("/bar/")], "v1", rewrite(path=replace_prefix("/xyz/"))),
        rule([prefix("/baz")], "v1", rewrite(path=replace_prefix("/"))),
        rule([prefix("/qux")], "v1", rewrite(path=replace_prefix("")))])], [
        {"path": "/foo", "backend": "v1", "backend_path": "/xyz"},
        {"path": "/foo/", "backend": "v1", "backend_path": "/xyz/"},
        {"path": "/foo/bar", "backend": "v1", "backend_path": "/xyz/bar"},
        {"path": "/bar", "backend": "v1", "backend_path": "/xyz"},
        {"path": "/bar/a", "backend": "v1", "backend_path": "/xyz/a"},
        {"path": "/baz", "backend": "v1", "backend_path": "/"},
        {"path": "/baz/", "backend": "v1", "backend_path": "/"},
        {"path": "/baz/q?x=1", "backend": "v1", "backend_path": "/q"},
        {"path": "/qux", "backend": "v1", "backend_path": "/"},
        {"path": "/qux/", "backend": "v1", "backend_path": "/"},
        {"path": "/qux/bar", "backend": "v1", "backend_path": "/bar"},
        {"path": "/foobar", "status": 404}]),
    ("HTTPRouteRewriteHost", [http_route("rewrite-host", [
        rule([prefix("/one")], "v1", rewrite(hostname="one.example.org")),
        rule(None, "v2", rewrite(hostname="example.org"))], hostnames=["rewrite.example"])], [
        {"host": "rewrite.example", "path": "/one", "backend": "v1", "seen": {"Host": "one.example.org"}},
        {"host": "rewrite.example", "path": "/", "backend": "v2", "seen": {"Host": "example.org"}}]),
    ("HTTPRouteRedirectPath", [http_route("redirect-path", [
        rule([prefix("/original-prefix")], None, redirect(path=replace_prefix("/replacement-prefix"))),
        rule([prefix("/full")], None, redirect(path=replace_full("/full-path-replacement"))),
        rule([prefix("/path-and-host")], None, redirect(hostname="example.org",
                                                        path=replace_prefix("/replacement-prefix"))),
        rule([prefix("/path-and-status")], None, redirect(path=replace_prefix("/replacement-prefix"),
                                                          statusCode=301))])], [
        {"path": "/original-prefix/lemon", "status": 302, "location": "http://{host}/replacement-prefix/lemon"},
        {"path": "/full/path/original", "status": 302, "location": "http://{host}/full-path-replacement"},
        {"path": "/path-and-host", "status": 302, "location": "http://example.org/replacement-prefix"},
        {"path": "/path-and-status", "status": 301, "location": "http://{host}/replacement-prefix"}]),
    ("HTTPRouteRedirectHostAndStatus / HTTPRouteRedirectScheme", [http_route("redirect-host-and-status", [
        rule([prefix("/hostname-redirect")], None, redirect(hostname="example.org")),
        rule([prefix("/host-and-status")], None, redirect(statusCode=301, hostname="example.org")),
        rule([prefix("/scheme-and-host")], None, redirect(hostname="example.org", scheme="https")),
        rule([prefix("/scheme")], None, redirect(scheme="https"))])], [
        {"path": "/hostname-redirect", "status": 302, "location": "http://example.org/hostname-redirect"},
        {"path": "/host-and-status", "status": 301, "location": "http://example.org/host-and-status"},
        {"path": "/scheme", "status": 302, "location": "https://a.test/scheme"},
        {"path": "/scheme-and-host", "status": 302, "location": "https://example.org/scheme-and-host"}]),
    ("HTTPRouteRedirectPort", [http_route("redirect-port", [
        rule([prefix("/port")], None, redirect(port=8083)),
        rule([prefix("/port-and-host")], None, redirect(hostname="example.org", port=8083)),
        rule([prefix("/port-and-status")], None, redirect(port=8083, statusCode=301)),
        rule([prefix("/port-and-host-and-status")], None, redirect(port=8083, hostname="example.org",
                                                                   statusCode=302))])], [
        {"path": "/port", "status": 302, "location": "http://{host}:8083/port"},
        {"path": "/port-and-host", "status": 302, "location": "http://example.org:8083/port-and-host"},
        {"path": "/port-and-status", "status": 301, "location": "http://{host}:8083/port-and-status"},
        {"path": "/port-and-host-and-status", "status": 302,
         "location": "http://example.org:8083/port-and-host-and-status"}]),
    # the routes of the HTTP listener (the upstream test's other two listeners, on 8080 and HTTPS, are not ported)
    ("HTTPRouteRedirectPortAndScheme", [http_route("redirect-port-and-scheme", [
        rule([prefix(f"/scheme-{scheme or 'nil'}-and-port-{port or 'nil'}")], None,
             redirect(hostname="example.org", **({"scheme": scheme} if scheme else {}),
                      **({"port": port} if port else {})))
        for scheme, port in ((None, None), (None, 80), (None, 8080), ("https", None), ("https", 443),
                             ("https", 8443))])], [
        {"path": path, "status": 302, "location": f"{location}{path}"} for path, location in (
            ("/scheme-nil-and-port-nil", "http://example.org"), ("/scheme-nil-and-port-80", "http://example.org"),
            ("/scheme-nil-and-port-8080", "http://example.org:8080"),
            ("/scheme-https-and-port-nil", "https://example.org"),
            ("/scheme-https-and-port-443", "https://example.org"),
            ("/scheme-https-and-port-8443", "https://example.org:8443"))]),
    ("HTTPRouteSimpleSameNamespace", [http_route("gateway-conformance-infra-test", [rule(None, "v1")])], [
        {"path": "/", "backend": "v1"}]),
    ("HTTPRouteOmittedBackendRefs", [http_route("omitted-backendrefs", [
        {"matches": [exact("/omitted-no-forward")]}, rule([exact("/empty-no-forward")], None),
        rule([prefix("/")], "v1")])], [
        {"path": "/forward", "backend": "v1"}, {"path": "/omitted-no-forward", "status": 500},
        {"path": "/empty-no-forward", "status": 500}]),
    ("HTTPRouteInvalidNonExistentBackendRef / HTTPRouteInvalidBackendRefUnknownKind", [
        http_route("invalid-backends", [rule([prefix("/missing")], "no-such-service"),
                                        rule([prefix("/kind")], {"name": "v1", "port": 80, "kind": "ConfigMap"}),
                                        rule([prefix("/")], "v1")])], [
        {"path": "/missing", "status": 500}, {"path": "/kind", "status": 500}, {"path": "/ok", "backend": "v1"}]),
]
"""(upstream test name, HTTPRoutes, checks)."""
