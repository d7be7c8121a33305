"""Routing through the real binary: every matcher and operator, priorities, entrypoint filters, 404."""

from __future__ import annotations

import httpx
import pytest

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.other]
address = "127.0.0.1:{other}"
[admin]
address = "127.0.0.1:{admin}"

[routers.host]
rule = "Host(`api.example.com`)"
service = "a"
[routers.hostregexp]
rule = "HostRegexp(`^[a-z]+\\\\.regex\\\\.test$`)"
service = "b"
[routers.path]
rule = "Path(`/exact`)"
service = "a"
[routers.prefix]
rule = "PathPrefix(`/pre`)"
service = "b"
[routers.pathregexp]
rule = "PathRegexp(`^/items/[0-9]+$`)"
service = "a"
[routers.method]
rule = "Method(`DELETE`) && PathPrefix(`/m`)"
service = "b"
[routers.header]
rule = "Header(`X-Tenant`, `blue`) && PathPrefix(`/h`)"
service = "a"
[routers.headers_legacy]
rule = "Headers(`X-Legacy`, `1`) && PathPrefix(`/h`)"
service = "b"
[routers.headerregexp]
rule = "HeaderRegexp(`X-Version`, `^v[0-9]+$`) && PathPrefix(`/hr`)"
service = "a"
[routers.query]
rule = "Query(`debug`, `1`) && PathPrefix(`/q`)"
service = "b"
[routers.queryregexp]
rule = "QueryRegexp(`id`, `^[0-9]+$`) && PathPrefix(`/qr`)"
service = "a"
[routers.clientip]
rule = "ClientIP(`127.0.0.0/8`) && PathPrefix(`/ip`)"
service = "b"
[routers.clientip_other]
rule = "ClientIP(`10.0.0.0/8`) && PathPrefix(`/net10`)"
service = "a"
[routers.or_not]
rule = "(PathPrefix(`/or1`) || PathPrefix(`/or2`)) && !Method(`POST`)"
service = "a"
[routers.low]
rule = "PathPrefix(`/prio`)"
service = "a"
priority = 1
[routers.high]
rule = "PathPrefix(`/prio`)"
service = "b"
priority = 100
[routers.longer_wins_a]
rule = "PathPrefix(`/len`)"
service = "a"
[routers.longer_wins_b]
rule = "PathPrefix(`/len/deeper`)"
service = "b"
[routers.only_other]
rule = "PathPrefix(`/other-only`)"
service = "b"
entrypoints = ["other"]

[services.a.load_balancer]
servers = [{url = "{a}"}]
[services.b.load_balancer]
servers = [{url = "{b}"}]
"""


@pytest.fixture
def routed(gateway, backends):
    from harness import free_port

    a, b = backends("a"), backends("b")
    other = free_port()
    g = gateway(CONFIG.replace("{a}", a.url).replace("{b}", b.url), other=other)
    g.other_url = f"http://127.0.0.1:{other}"
    return g


def who(g, path, method="GET", url=None, **kw):
    r = httpx.request(method, (url or g.url) + path, **kw)
    return r.status_code, r.headers.get("x-backend")


def test_host_matcher_ignores_case_and_port(routed):
    assert who(routed, "/", headers={"Host": "API.Example.com:8080"}) == (200, "a")
    assert who(routed, "/", headers={"Host": "other.example.com"})[0] == 404


def test_host_regexp(routed):
    assert who(routed, "/", headers={"Host": "abc.regex.test"}) == (200, "b")
    assert who(routed, "/", headers={"Host": "ab1.regex.test"})[0] == 404


def test_path_exact_and_prefix(routed):
    assert who(routed, "/exact") == (200, "a")
    assert who(routed, "/exact/more")[0] == 404
    assert who(routed, "/pre") == (200, "b")
    assert who(routed, "/prefix/x") == (200, "b")


def test_path_regexp(routed):
    assert who(routed, "/items/42") == (200, "a")
    assert who(routed, "/items/abc")[0] == 404


def test_method(routed):
    assert who(routed, "/m", method="DELETE") == (200, "b")
    assert who(routed, "/m", method="GET")[0] == 404


def test_header_and_legacy_headers_and_regexp(routed):
    assert who(routed, "/h", headers={"x-tenant": "blue"}) == (200, "a")
    assert who(routed, "/h", headers={"X-Legacy": "1"}) == (200, "b")
    assert who(routed, "/h", headers={"X-Tenant": "red"})[0] == 404
    assert who(routed, "/hr", headers={"X-Version": "v12"}) == (200, "a")
    assert who(routed, "/hr", headers={"X-Version": "12"})[0] == 404


def test_query_and_query_regexp(routed):
    assert who(routed, "/q?debug=1") == (200, "b")
    assert who(routed, "/q?debug=0")[0] == 404
    assert who(routed, "/qr?id=123") == (200, "a")
    assert who(routed, "/qr?id=12a")[0] == 404


def test_client_ip(routed):
    assert who(routed, "/ip") == (200, "b")
    assert who(routed, "/net10")[0] == 404  # 10.0.0.0/8 does not contain 127.0.0.1


def test_or_and_not_with_parentheses(routed):
    assert who(routed, "/or1") == (200, "a")
    assert who(routed, "/or2") == (200, "a")
    assert who(routed, "/or1", method="POST")[0] == 404


def test_explicit_priority_higher_wins(routed):
    assert who(routed, "/prio") == (200, "b")


def test_default_priority_is_rule_length(routed):
    assert who(routed, "/len/deeper/x") == (200, "b")
    assert who(routed, "/len/x") == (200, "a")


def test_router_entrypoint_filter(routed):
    assert who(routed, "/other-only")[0] == 404
    assert who(routed, "/other-only", url=routed.other_url) == (200, "b")
    # routers without an entrypoint list serve every http entrypoint
    assert who(routed, "/exact", url=routed.other_url) == (200, "a")


def test_no_route_is_404_with_json_body(routed):
    r = httpx.get(routed.url + "/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "No route matched"}
