"""Providers without processes: the discovery document contract, static-wins merging, DNS expansion."""

from __future__ import annotations

import pytest
from a3s_gateway.master.probes.http import parse_status_range
from a3s_gateway.master.providers.discovery import DocumentError, Seed, check_document, contribution
from a3s_gateway.master.providers.dns import DnsResolver, is_name, names_in


def test_document_defaults_and_errors():
    doc = check_document({"name": "auth", "version": "1.2.0", "routes": [{"rule": "PathPrefix(`/auth`)"}]})
    assert doc["health_path"] == "/health" and doc["weight"] == 1
    assert doc["routes"] == [{"rule": "PathPrefix(`/auth`)", "middlewares": [], "priority": None}]
    for bad in [[], {"version": "1"}, {"name": "a"}, {"name": "a", "version": "1", "routes": [{}]},
                {"name": "a b", "version": "1"}, {"name": "a", "version": "1", "weight": -1},
                {"name": "a", "version": "1", "health_path": "health"}]:
        with pytest.raises(DocumentError):
            check_document(bad)


def test_static_names_win_and_replicas_merge():
    a = Seed("http://10.0.0.1:80", doc=check_document({"name": "api", "version": "1",
                                                       "routes": [{"rule": "Path(`/a`)"}, {"rule": "Path(`/b`)"}]}))
    b = Seed("http://10.0.0.2:80", doc=check_document({"name": "api", "version": "1", "weight": 3,
                                                       "routes": [{"rule": "Path(`/a`)"}]}))
    c = Seed("http://10.0.0.3:80", doc=check_document({"name": "static", "version": "1",
                                                       "routes": [{"rule": "Path(`/s`)"}]}))
    out = contribution([a, b, c], static_routers={"api-1"}, static_services={"static"})
    assert out["services"] == {"api": {"load_balancer": {"servers": [
        {"url": "http://10.0.0.1:80", "weight": 1}, {"url": "http://10.0.0.2:80", "weight": 3}]}}}
    assert set(out["routers"]) == {"api"}


def test_dns_expansion_keeps_ports_and_weights():
    r = DnsResolver({"refresh_secs": 30, "nameservers": ["127.0.0.1:53"], "timeout": 1.0}, None)  # type: ignore[arg-type]
    services = {"s": {"load_balancer": {"servers": [{"url": "http://api.test:8080", "weight": 2},
                                                     {"url": "http://_web._tcp.test", "weight": 1},
                                                     {"url": "http://10.0.0.9:80", "weight": 1}]}}}
    assert names_in(services) == {"api.test", "_web._tcp.test"} and not is_name("::1")
    r.results = {"api.test": [("10.0.0.1", 0, 0), ("fd00::1", 0, 0)], "_web._tcp.test": [("10.0.0.2", 9000, 5)]}
    r.expand(services)
    assert services["s"]["load_balancer"]["servers"] == [
        {"url": "http://10.0.0.1:8080", "weight": 2}, {"url": "http://[fd00::1]:8080", "weight": 2},
        {"url": "http://10.0.0.2:9000", "weight": 5}, {"url": "http://10.0.0.9:80", "weight": 1}]


def test_status_ranges():
    assert parse_status_range("200-399") == (200, 399) and parse_status_range("204") == (204, 204)
