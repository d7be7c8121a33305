"""The gateway behind test_both_protocols*.py: one config with every case's router, middleware and service,
served over HTTP/1.1 and h2c (entrypoint ``web``), HTTP/2 over TLS (``secure``, ALPN) and HTTP/3 (``secure``'s
QUIC side), two workers, in front of real backends (``a``, ``b``, ``counted``) and a dead port; and a ``Client``
per protocol.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from certs import CA
from h3_client import H3Transport
from harness import Backend, Gateway, free_port

PROTOCOLS = ("http1", "h2c", "h2-tls", "h3")
VERSIONS = {"http1": "HTTP/1.1", "h2c": "HTTP/2", "h2-tls": "HTTP/2", "h3": "HTTP/3"}
SECRET = "both-protocols-hmac-key-" + "k" * 40
TLS_NAME = "localhost"          # the TLS entrypoint's certificate; resolves to loopback

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.secure]
address = "127.0.0.1:{secure}"
http3 = true
[entrypoints.secure.tls]
cert_file = "%(cert)s"
key_file = "%(key)s"
[admin]
address = "127.0.0.1:{admin}"

[services.a.load_balancer]
servers = [{url = "%(a)s"}]
[services.b.load_balancer]
servers = [{url = "%(b)s"}]
[services.dead.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}]
[services.flaky.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}, {url = "%(counted)s"}]
[services.counted.load_balancer]
servers = [{url = "%(counted)s"}]
[services.slow.load_balancer]
servers = [{url = "%(a)s"}]
[services.slow.load_balancer.timeouts]
response_header = "300ms"
[services.down.load_balancer]
servers = [{url = "%(a)s"}]
[services.down.load_balancer.health_check]
path = "/status/500"
interval = "100ms"
[services.sticky.load_balancer]
servers = [{url = "%(a)s"}, {url = "%(b)s"}]
[services.sticky.load_balancer.sticky]
cookie = "gw_sticky"

# ---------------------------------------------------------------- matchers
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
[routers.headerregexp]
rule = "HeaderRegexp(`X-Version`, `^v[0-9]+$`) && PathPrefix(`/hr`)"
service = "b"
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
[routers.xff]
rule = "Header(`X-Forwarded-For`, `1.2.3.4`) && PathPrefix(`/xff`)"
service = "b"
[routers.whoami]
rule = "PathPrefix(`/whoami`)"
service = "whoami@internal"

# ---------------------------------------------------------------- middlewares
[middlewares.hdr]
type = "headers"
request_headers = {X-Set = "set", X-Drop-Me = ""}
add_request_headers = {X-Multi = "added"}
remove_request_headers = ["X-Remove"]
response_headers = {X-Resp = "r", Server = ""}
add_response_headers = {X-Backend = "also"}
[middlewares.strip]
type = "strip-prefix"
prefixes = ["/strip"]
[middlewares.add]
type = "add-prefix"
prefix = "/base"
[middlewares.replace]
type = "replace-path"
path = "/fixed"
[middlewares.to-https]
type = "redirect-scheme"
port = 8443
[middlewares.moved]
type = "redirect-regex"
regex = "^(https?)://([^/]+)/old/(.*)$"
replacement = "$1://$2/new/$${3}"
[middlewares.basic]
type = "basic-auth"
username = "admin"
password = "plain-pw"
realm = "staff"
header_field = "X-Auth-User"
[middlewares.key]
type = "api-key"
keys = ["k-one"]
[middlewares.jwt]
type = "jwt"
value = "%(secret)s"
claims_to_headers = {sub = "X-JWT-Subject"}
[middlewares.allow-local]
type = "ip-allow"
allowed_ips = ["127.0.0.1", "::1"]
[middlewares.allow-ten]
type = "ip-allow"
allowed_ips = ["10.0.0.0/8"]
[middlewares.cors]
type = "cors"
allowed_origins = ["https://a.example"]
allowed_methods = ["GET", "PUT"]
allowed_headers = ["X-Custom"]
max_age = 600
[middlewares.gz]
type = "compress"
[middlewares.limit]
type = "body-limit"
max_body_bytes = 1000
[middlewares.rate]
type = "rate-limit"
rate = 2
period = "1h"
key = "header:X-Tenant"
[middlewares.retry]
type = "retry"
max_retries = 2
retry_interval_ms = 10
[middlewares.unprefix]
type = "strip-prefix"
prefixes = ["/gz", "/retry", "/rstatus", "/cb-http1", "/cb-h2c", "/cb-h2-tls", "/cb-h3"]
"""
ROUTES: dict[str, tuple[str, list[str]]] = {
    "hdr": ("a", ["hdr"]), "strip": ("a", ["strip"]), "add": ("a", ["add"]), "replace": ("a", ["replace"]),
    "https": ("a", ["to-https"]), "old": ("a", ["moved"]), "basic": ("a", ["basic"]), "key": ("a", ["key"]),
    "jwt": ("a", ["jwt"]), "allow": ("a", ["allow-local"]), "ten": ("a", ["allow-ten"]), "cors": ("a", ["cors"]),
    "gz": ("a", ["gz", "unprefix"]), "limit": ("a", ["limit"]), "rate": ("a", ["rate"]),
    "retry": ("flaky", ["retry", "unprefix"]), "rstatus": ("counted", ["retry", "unprefix"]),
    "dead": ("dead", []), "delay": ("slow", []), "down": ("down", []), "stick": ("sticky", []),
}
CONFIG += "".join(f"""
[routers.r-{name}]
rule = "PathPrefix(`/{name}`)"
service = "{service}"
middlewares = {mws!r}
""".replace("'", '"') for name, (service, mws) in ROUTES.items())
# one circuit breaker per protocol, so each protocol trips its own
CONFIG += "".join(f"""
[middlewares.cb-{p}]
type = "circuit-breaker"
failure_threshold = 3
cooldown_secs = "1h"
[routers.cb-{p}]
rule = "PathPrefix(`/cb-{p}`)"
service = "a"
middlewares = ["cb-{p}", "unprefix"]
""" for p in PROTOCOLS)


@dataclass
class Env:
    gw: Gateway
    ca: CA
    counted: Backend
    clients: dict[str, httpx.Client]


def gateway_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The gateway and its backends, for a module-scoped ``env`` fixture (``yield from gateway_env(...)``)."""
    ca = CA(tmp_path_factory.mktemp("pki"))
    pair = ca.issue(TLS_NAME)
    a, b, counted = Backend("a"), Backend("b"), Backend("counted")
    config = CONFIG % {"cert": pair.cert, "key": pair.key, "a": a.url, "b": b.url, "counted": counted.url,
                       "dead": free_port(), "secret": SECRET}
    g = Gateway(config, tmp_path_factory.mktemp("gw"), workers=2, secure=free_port())
    e = Env(g, ca, counted, {})
    try:
        yield e
    finally:
        for c in e.clients.values():
            c.close()
        g.stop()
        for backend in (a, b, counted):
            backend.stop()


def new_client(env: Env, proto: str) -> httpx.Client:
    """A client speaking ``proto`` to the gateway: HTTP/1.1 or h2c to the plain entrypoint, h2 by ALPN to TLS,
    HTTP/3 (aioquic) to the TLS entrypoint's QUIC side."""
    if proto == "h3":
        port = env.gw.ports["secure"]
        return httpx.Client(transport=H3Transport(port, str(env.ca.path), TLS_NAME),
                            base_url=f"https://{TLS_NAME}:{port}", timeout=10)
    if proto == "http1":
        return httpx.Client(base_url=env.gw.url, timeout=10)
    if proto == "h2c":
        return httpx.Client(base_url=env.gw.url, http1=False, http2=True, timeout=10)
    ctx = ssl.create_default_context(cafile=str(env.ca.path))
    return httpx.Client(base_url=f"https://{TLS_NAME}:{env.gw.ports['secure']}", http1=False, http2=True,
                        verify=ctx, timeout=10)


class Client:
    """Requests over one protocol; every response is checked to have come back over that protocol."""

    def __init__(self, env: Env, proto: str) -> None:
        self.env, self.proto = env, proto
        if proto not in env.clients:
            env.clients[proto] = new_client(env, proto)
        self.http = env.clients[proto]
        self.version = VERSIONS[proto]
        self.scheme = "https" if proto in ("h2-tls", "h3") else "http"
        self.authority = self.http.base_url.netloc.decode()

    def request(self, method: str, path: str, fresh: bool = False, **kw: Any) -> httpx.Response:
        """``fresh``: on a new connection (so either worker may take it)."""
        if fresh:
            with new_client(self.env, self.proto) as c:
                r = c.request(method, path, **kw)
        else:
            r = self.http.request(method, path, **kw)
        assert r.http_version == self.version, (self.proto, r.http_version)
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


def routed_to(r: httpx.Response) -> tuple[int, str | None]:
    return r.status_code, r.headers.get("x-backend")
