"""The schema of the whole config: entrypoints, routers, services, providers and admin (middlewares come from
``middleware_types``), assembled into ``CONFIG``.

Invariants of the normalized form (see README of the package API in ``__init__``):

* every key of every table is present, with defaults filled; optional sub-tables (``tls``, ``health_check``,
  ``sticky``, ``providers.file``, ``providers.discovery``) are None when not given;
* listen addresses keep ``address`` as given and gain ``host`` (str) and ``port`` (int);
* durations are float seconds; a router's ``priority`` is an int (default: the length of its rule);
* server URLs lose a trailing '/'.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import ssl
from typing import Any

from ..plane.traffic import MAX_MIRRORS
from .acme_dns_schema import DNS_PROVIDER
from .ai_schema import AFFINITY, AGENT_HEALTH
from .kubernetes_schema import KUBERNETES
from .middleware_types import MIDDLEWARE
from .provider_schema import STORE_PROVIDERS
from .schema import (
    Bool,
    Duration,
    Field,
    Int,
    ListOf,
    MapOf,
    Nullable,
    Number,
    Reporter,
    Str,
    Table,
    address_error,
    header_name_error,
    header_value_error,
    ip_network_error,
    join,
    parse_address,
    path_error,
    readable_file_error,
    url_check,
)
from .serving_schema import CLUSTER as SERVING_CLUSTER
from .serving_schema import SERVING

PROTOCOLS = ("http", "tcp", "udp")
STRATEGIES = ("round-robin", "weighted", "least-connections", "random")


def _split_address(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if "address" in out:
        out["host"], out["port"] = parse_address(out["address"])
    if out.get("http3"):
        _check_http3(out, path, rep)


def _check_http3(out: dict[str, Any], path: str, rep: Reporter) -> None:
    """HTTP/3 is QUIC, and QUIC is TLS 1.3 with the entrypoint's own certificate files (worker/http3.py)."""
    tls = out.get("tls")
    if out.get("protocol", "http") != "http":
        rep.add(join(path, "http3"), f"http3 is for http entrypoints, not protocol = \"{out['protocol']}\"")
    elif tls is None:
        rep.add(join(path, "http3"), "http3 needs tls: QUIC is always encrypted",
                suggestion=f"add [{path}.tls] with cert_file and key_file")
    elif not (tls.get("cert_file") or tls.get("certificates")):
        rep.add(join(path, "http3"), "http3 needs tls.cert_file or tls.certificates (ACME-only entrypoints "
                "serve HTTP/1.1 and HTTP/2 only)")
    elif tls.get("client_ca_file"):
        rep.add(join(path, "http3"), "http3 cannot require client certificates (tls.client_ca_file): the QUIC "
                "side does not verify them")
    elif importlib.util.find_spec("aioquic") is None:
        rep.add(join(path, "http3"), "http3 needs the aioquic package", suggestion="pip install aioquic")


def _certificate_error(cert_file: str, key_file: str) -> str | None:
    """Why a certificate/key pair cannot serve TLS (unparsable PEM, key not matching), or None."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as e:
        return f"cannot use certificate '{cert_file}' with key '{key_file}': {e.reason or e}"
    except OSError as e:
        return f"cannot read certificate '{cert_file}' or key '{key_file}': {e.strerror or e}"
    return None


def _ca_error(ca_file: str) -> str | None:
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as e:
        return f"cannot load CA certificates from '{ca_file}': {getattr(e, 'reason', None) or e}"
    return None


def _check_pair(out: dict[str, Any], path: str, rep: Reporter) -> None:
    if out.get("cert_file") and out.get("key_file"):
        message = _certificate_error(out["cert_file"], out["key_file"])
        if message:
            rep.add(join(path, "cert_file"), message)


def _check_certificate(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    _check_pair(out, path, rep)


def _tls_needs_certificate(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    _check_pair(out, path, rep)
    if out.get("client_ca_file"):
        message = _ca_error(out["client_ca_file"])
        if message:
            rep.add(join(path, "client_ca_file"), message)
    if out.get("acme") or raw.get("certificates"):
        return
    for key in ("cert_file", "key_file"):
        if raw.get(key) is None:
            rep.add(join(path, key), "required unless acme = true or certificates are given")


def _check_service_tls(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if out.get("ca_file"):
        message = _ca_error(out["ca_file"])
        if message:
            rep.add(join(path, "ca_file"), message)


def _check_proxy_protocol(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    """A PROXY header names one client: only servers whose connections carry one client's bytes can get it."""
    if out.get("proxy_protocol") is None:
        return
    for i, server in enumerate(out.get("servers") or []):
        scheme = str(server.get("url", "")).partition("://")[0]
        if scheme not in ("http", "tcp", "unix", "vsock"):
            rep.add(join(path, f"servers[{i}].url"), f"proxy_protocol is sent to http://, tcp://, unix:// and "
                    f"vsock:// servers only, not {scheme}:// (TLS and HTTP/2 connections are shared or encrypted "
                    f"before it)")


def _default_priority(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if out.get("priority") is None and "rule" in out:
        out["priority"] = len(out["rule"])


def _strip_trailing_slash(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if "url" in out:
        out["url"] = out["url"].rstrip("/")


_ADDRESS = Str(check=address_error)
_FILE = Str(check=readable_file_error)

TLS = Table(
    {
        "cert_file": Field(Nullable(_FILE)),
        "key_file": Field(Nullable(_FILE)),
        "min_version": Field(Str(choices=("1.2", "1.3")), "1.2"),
        "acme": Field(Bool(), False),
        "certificates": Field(
            ListOf(
                Table(
                    {"cert_file": Field(_FILE, required=True), "key_file": Field(_FILE, required=True)},
                    post=_check_certificate,
                )
            ),
            [],
        ),
        "client_ca_file": Field(Nullable(_FILE)),
    },
    post=_tls_needs_certificate,
)

ENTRYPOINT = Table(
    {
        "address": Field(_ADDRESS, required=True),
        "protocol": Field(Str(choices=PROTOCOLS), "http"),
        "tls": Field(Nullable(TLS)),
        "max_connections": Field(Nullable(Int(minimum=0))),
        "tcp_allowed_ips": Field(ListOf(Str(check=ip_network_error)), []),
        # Peers whose X-Forwarded-For is kept (and appended to); anyone else's is replaced by the peer address.
        "forwarded_headers": Field(Table({"trusted_ips": Field(ListOf(Str(check=ip_network_error)), [])}), {}),
        # Peers whose PROXY protocol header (v1 or v2) names the client (worker/proxy_protocol.py).
        "proxy_protocol": Field(Nullable(Table({
            "trusted_ips": Field(ListOf(Str(check=ip_network_error), min_items=1,
                                        too_few="proxy_protocol needs the peers it trusts"), required=True),
        }))),
        # HTTP/3 (QUIC) on the same port over UDP, advertised by Alt-Svc on the TCP side (worker/http3.py).
        "http3": Field(Bool(), False),
        "udp": Field(
            Table({"idle_timeout": Field(Duration(), 30.0), "max_sessions": Field(Int(minimum=1), 10000)}), {}
        ),
    },
    post=_split_address,
    derived=("host", "port"),
)

ROUTER = Table(
    {
        "rule": Field(Str(nonempty=True), required=True),
        "service": Field(Str(nonempty=True), required=True),
        "entrypoints": Field(ListOf(Str()), []),
        "middlewares": Field(ListOf(Str()), []),
        "priority": Field(Nullable(Int())),
        # TCP routers only: absent = plain TCP, {passthrough = true} = route by SNI and relay the TLS bytes,
        # {} = terminate TLS with the entrypoint's certificates and relay the plaintext.
        "tls": Field(Nullable(Table({"passthrough": Field(Bool(), False)}))),
    },
    post=_default_priority,
)

SERVER = Table(
    {
        "url": Field(
            Str(check=url_check("http", "https", "h2c", "tcp", "udp", port_required=("tcp", "udp"), local=True)),
            required=True,
        ),
        "weight": Field(Int(minimum=0), 1),
    },
    post=_strip_trailing_slash,
)

def _status_range_error(text: str) -> str | None:
    """A status (``"404"``) or an inclusive range (``"500-599"``): health checks' expected statuses, failover's
    and the access log's status filters."""
    lo, sep, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi if sep else lo)
    except ValueError:
        return f"expected a status or a range like '200-399', got {text!r}"
    if not 100 <= low <= high <= 599:
        return f"expected statuses between 100 and 599 (low first), got {text!r}"
    return None


HEALTH_CHECK = Table(
    {
        "path": Field(Str(check=path_error), required=True),
        "interval": Field(Duration(), 10.0),
        "timeout": Field(Duration(), 5.0),
        "unhealthy_threshold": Field(Int(minimum=1), 3),
        "healthy_threshold": Field(Int(minimum=1), 1),
        "method": Field(Str(choices=("GET", "HEAD", "POST", "OPTIONS")), "GET"),
        "expected_status": Field(Str(check=_status_range_error), "200-399"),
        "headers": Field(MapOf(Str(), key_check=header_name_error), {}),
        "hostname": Field(Nullable(Str(nonempty=True))),
    }
)

STICKY = Table(
    {
        "cookie": Field(Str(check=header_name_error), required=True),
        "ttl": Field(Duration(), 3600.0),
        "secure": Field(Bool(), False),
        "http_only": Field(Bool(), True),
        "same_site": Field(Str(choices=("lax", "strict", "none")), "lax"),
    }
)

# Passive health: failures seen on real traffic (counted across all workers on the shared-memory plane) take a
# backend out for ``cooldown`` seconds, after which it gets traffic again (the original never recovered).
PASSIVE_HEALTH = Table(
    {
        "max_failures": Field(Int(minimum=0), 5),       # consecutive failures that trip it; 0 = off
        "cooldown": Field(Duration(), 10.0),
        "statuses": Field(ListOf(Int(minimum=500, maximum=599)), []),  # 5xx that count, besides connect errors
    }
)

def _check_outlier_detection(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    for key in ("interval", "base_ejection_time"):
        if out.get(key) == 0:
            rep.add(join(path, key), "must be greater than 0")
    if "max_ejection_time" not in raw:         # Envoy's: the default 300 s or base_ejection_time, the larger
        out["max_ejection_time"] = max(out.get("max_ejection_time", 0), out.get("base_ejection_time", 0))
    elif out.get("max_ejection_time", 1) < out.get("base_ejection_time", 0):
        rep.add(join(path, "max_ejection_time"),
                f"must be at least base_ejection_time ({out['base_ejection_time']:g}s), "
                f"got {out['max_ejection_time']:g}s")


# Envoy's outlier detection (worker/services/outliers.py, master/probes/outliers.py); replaces passive_health.
OUTLIER_DETECTION = Table(
    {
        "consecutive_5xx": Field(Int(minimum=0), 5),               # 0 = off
        "consecutive_gateway_failure": Field(Int(minimum=0), 0),   # 502/503/504 and no answer; 0 = off
        "interval": Field(Duration(), 10.0),
        "base_ejection_time": Field(Duration(), 30.0),
        "max_ejection_time": Field(Duration(), 300.0),
        "max_ejection_time_jitter": Field(Duration(), 0.0),
        "max_ejection_percent": Field(Int(minimum=0, maximum=100), 10),
        "success_rate": Field(
            Table({
                "enabled": Field(Bool(), True),
                "minimum_hosts": Field(Int(minimum=1), 5),
                "request_volume": Field(Int(minimum=1), 100),
                "stdev_factor": Field(Number(minimum=0), 1.9),
            }),
            {},
        ),
        "healthy_panic_threshold": Field(Int(minimum=0, maximum=100), 50),   # percent; 0 = never panic
        "panic": Field(Str(choices=("spread", "fail")), "spread"),
    },
    post=_check_outlier_detection,
)


def _one_passive_model(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if "passive_health" in raw and raw.get("outlier_detection") is not None:
        rep.add(join(path, "passive_health"), "outlier_detection replaces passive_health; give only one of them")


def _check_load_balancer(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    _one_passive_model(out, raw, path, rep)
    _check_proxy_protocol(out, raw, path, rep)


TIMEOUTS = Table(
    {
        "connect": Field(Duration(), 5.0),
        "response_header": Field(Duration(), 60.0),
        "idle": Field(Duration(), 90.0),
    }
)

LOAD_BALANCER = Table(
    {
        "strategy": Field(Str(choices=STRATEGIES), "round-robin"),
        "servers": Field(ListOf(SERVER, min_items=1, too_few="service has no servers"), required=True),
        "health_check": Field(Nullable(HEALTH_CHECK)),
        "sticky": Field(Nullable(STICKY)),
        "affinity": Field(Nullable(AFFINITY)),            # conversation affinity (ai_schema.py)
        "agent_health": Field(Nullable(AGENT_HEALTH)),    # model health probe (master/probes/model.py)
        "pass_host_header": Field(Bool(), True),
        # the HTTP version spoken to https:// servers (h2c:// ones always speak 2, http:// ones 1.1)
        "http_version": Field(Str(choices=("1.1", "2")), "1.1"),
        # a PROXY protocol header in front of every backend connection (worker/proxy_protocol.py)
        "proxy_protocol": Field(Nullable(Table({"version": Field(Int(minimum=1, maximum=2), 1)}))),
        "timeouts": Field(TIMEOUTS, {}),
        "passive_health": Field(PASSIVE_HEALTH, {}),
        "outlier_detection": Field(Nullable(OUTLIER_DETECTION)),
        "tls": Field(
            Table(
                {"ca_file": Field(Nullable(_FILE)), "insecure_skip_verify": Field(Bool(), False)},
                post=_check_service_tls,
            ),
            {},
        ),
    },
    post=_check_load_balancer,
)

# A service of services (worker/services/weighted.py): children are any services, nested to any depth; cycles and
# unknown names are rejected by validate.py with their key paths.
WEIGHTED = Table(
    {
        "services": Field(
            ListOf(
                Table({"name": Field(Str(nonempty=True), required=True), "weight": Field(Int(minimum=0), 1)}),
                min_items=1,
                too_few="a weighted service needs at least one child service",
            ),
            required=True,
        ),
        "sticky": Field(Nullable(STICKY)),          # pins a client to one child (the cookie names the child)
    }
)

# The fallback serves while the primary cannot (worker/services/failover.py); both are any services.
FAILOVER = Table({
    "service": Field(Str(nonempty=True), required=True),
    "fallback": Field(Str(nonempty=True), required=True),
    # the primary's answers with these statuses are dropped and the request (body replayed) goes to the fallback
    "errors": Field(Nullable(Table({
        "status": Field(ListOf(Str(check=_status_range_error), min_items=1,
                               too_few="list at least one status or range, e.g. '500-504'"), required=True),
        "max_body_bytes": Field(Int(minimum=0), 1 << 20),      # a larger body: the primary's answer stands
    }))),
})

def _check_mirror_count(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    if len(out.get("mirrors") or ()) > MAX_MIRRORS:
        rep.add(join(path, "mirrors"), f"at most {MAX_MIRRORS} mirrors per service (the plane counts each)")


# A copy of each request goes to the mirrors, fire-and-forget (worker/services/mirroring.py); all are any services.
MIRRORING = Table({
    "service": Field(Str(nonempty=True), required=True),
    "mirrors": Field(ListOf(Table({"name": Field(Str(nonempty=True), required=True),
                                   "percent": Field(Int(minimum=0, maximum=100), 100)}),
                            min_items=1, too_few="a mirroring service needs at least one mirror"), required=True),
    "mirror_body": Field(Bool(), True),
    "max_body_bytes": Field(Int(minimum=0, maximum=64 << 20), 1 << 20),   # larger: served, not mirrored
    "timeout": Field(Duration(check=lambda s: None if s > 0 else "must be greater than 0"), 5.0),
    "max_in_flight": Field(Int(minimum=1), 256),                          # per worker; more are dropped
}, post=_check_mirror_count)

SERVICE_KINDS = ("load_balancer", "weighted", "failover", "mirroring", "serving")
"""The keys of ``[services.<name>]``: exactly one is given; the others normalize to None."""


def _one_kind(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    given = [kind for kind in SERVICE_KINDS if raw.get(kind) is not None]
    if not given:
        rep.add(join(path, "load_balancer"), "required key is missing (or another service kind: "
                f"{', '.join(SERVICE_KINDS[1:])})")
    elif len(given) > 1:
        rep.add(path, f"a service has exactly one kind, got {' and '.join(given)}")


SERVICE = Table({kind: Field(Nullable(spec)) for kind, spec in (("load_balancer", LOAD_BALANCER),
                                                                ("weighted", WEIGHTED), ("failover", FAILOVER),
                                                                ("mirroring", MIRRORING), ("serving", SERVING))},
                post=_one_kind)


def child_services(svc: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """The services a normalized service of services picks through, as (key path inside the service, the table
    holding the name, its key): ``table[key]`` is the child's name, and where a resolved name is written back."""
    if svc.get("weighted") is not None:
        return [(f"weighted.services[{i}].name", c, "name") for i, c in enumerate(svc["weighted"]["services"])]
    if svc.get("failover") is not None:
        return [(f"failover.{key}", svc["failover"], key) for key in ("service", "fallback") if key in svc["failover"]]
    if svc.get("mirroring") is not None:
        mirroring = svc["mirroring"]
        return [("mirroring.service", mirroring, "service")] + [
            (f"mirroring.mirrors[{i}].name", m, "name") for i, m in enumerate(mirroring["mirrors"])]
    return []


def load_balancers(services: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, load_balancer table) of the normalized services that have servers (every kind but those of
    services)."""
    return [(name, svc["load_balancer"]) for name, svc in services.items() if svc.get("load_balancer") is not None]

PROVIDERS = Table(
    {
        "file": Field(
            Nullable(Table({"watch": Field(Bool(), True), "directory": Field(Nullable(Str(nonempty=True)))}))
        ),
        "discovery": Field(
            Nullable(
                Table(
                    {
                        "seeds": Field(
                            ListOf(
                                Table({"url": Field(Str(check=url_check("http", "https")), required=True)})
                            ),
                            required=True,
                        ),
                        "poll_interval_secs": Field(Int(minimum=1), 30),
                        "timeout_secs": Field(Int(minimum=1), 5),
                        # failed polls (document or health) in a row before a seed's services are removed
                        "failure_threshold": Field(Int(minimum=1), 3),
                    }
                )
            )
        ),
        # Ingress, IngressClass, EndpointSlices and TLS Secrets; see master/providers/kubernetes/
        "kubernetes": Field(Nullable(KUBERNETES)),
        # Resolve hostname servers (A/AAAA; SRV for _service._proto.name) in the master; see master/providers/dns.py
        "dns": Field(
            Nullable(
                Table(
                    {
                        "refresh_secs": Field(Int(minimum=1), 30),
                        "nameservers": Field(ListOf(Str(check=address_error)), []),
                        "timeout": Field(Duration(), 2.0),
                    }
                )
            )
        ),
        **STORE_PROVIDERS,      # redis, etcd: shared/config/provider_schema.py
    }
)

# Certificates from an ACME CA (Let's Encrypt or any RFC 8555 CA) for entrypoints with tls.acme = true.
ACME = Table(
    {
        "email": Field(Nullable(Str())),
        "domains": Field(ListOf(Str(nonempty=True)), []),
        "directory_url": Field(Nullable(Str(check=url_check("https", "http")))),
        "staging": Field(Bool(), False),
        "storage_path": Field(Str(nonempty=True), "/var/lib/a3s-gateway/acme"),
        "renewal_days": Field(Int(minimum=0), 30),
        "ca_bundle": Field(Nullable(_FILE)),
        "challenge": Field(Str(choices=("http-01", "dns-01")), "http-01"),
        "dns_hook": Field(
            Nullable(Table({"command": Field(Nullable(Str(nonempty=True))),
                            "webhook": Field(Nullable(Str(check=url_check("http", "https")))),
                            "propagation_wait": Field(Duration(), 0.0)}))
        ),
        "dns_provider": Field(DNS_PROVIDER),      # built-in DNS-01 providers: shared/config/acme_dns_schema.py
        "retry_interval": Field(Duration(), 60.0),
        "check_interval": Field(Duration(), 43200.0),
    }
)

def _admin_post(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    """The admin API serves the whole config and metrics: off loopback it needs a token (README "Security")."""
    _split_address(out, raw, path, rep)
    if not out.get("enabled", True) or out.get("token") or "host" not in out:
        return
    host = out["host"]
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        rep.add(join(path, "token"), f"required: admin.address '{out['address']}' is not a loopback address; set "
                "admin.token (clients send 'Authorization: Bearer <token>') or bind admin.address to 127.0.0.1")


ADMIN = Table(
    {
        "enabled": Field(Bool(), True),
        "address": Field(_ADDRESS, "127.0.0.1:9090"),
        "token": Field(Nullable(Str(nonempty=True))),   # secret: redacted, never logged
    },
    post=_admin_post,
    derived=("host", "port"),
)

def _positive_timeouts(out: dict[str, Any], raw: dict[Any, Any], path: str, rep: Reporter) -> None:
    for key in ("header_timeout", "idle_timeout", "body_timeout"):
        if out.get(key) == 0:
            rep.add(join(path, key), "must be greater than 0")


# Resource limits of every HTTP entrypoint (worker/limits.py; README "Security and limits").
LIMITS = Table(
    {
        "max_uri_bytes": Field(Int(minimum=256, maximum=1 << 20), 8192),            # 414 past it
        "max_header_bytes": Field(Int(minimum=1024, maximum=1 << 24), 32768),       # 431 past it
        "max_header_count": Field(Int(minimum=1, maximum=10000), 100),              # 431 past it
        "max_body_bytes": Field(Int(minimum=0), 0),                                 # 413 past it; 0 = no limit
        "header_timeout": Field(Duration(), 15.0),                                  # 408 and close
        "idle_timeout": Field(Duration(), 60.0),                                    # keep-alive: close
        "body_timeout": Field(Duration(), 60.0),                                    # 408 and close
        "max_connections": Field(Int(minimum=0), 10000),                            # per worker, per entrypoint
        "max_pipeline": Field(Int(minimum=1, maximum=1024), 16),
        "model_inspect_bytes": Field(Int(minimum=1024, maximum=1 << 24), 65536),    # Model(), AI middlewares
    },
    post=_positive_timeouts,
)

# Access log (worker/observability/access_log.py): one line per request, off by default.
ACCESS_LOG_FIELDS = ("time", "client_ip", "method", "host", "path", "query", "protocol", "status",
                     "request_bytes", "response_bytes", "duration_ms", "upstream_ms", "router", "service",
                     "backend", "entrypoint", "worker", "trace_id", "span_id", "user_agent", "reason", "headers",
                     "ai")


ACCESS_LOG = Table(
    {
        "enabled": Field(Bool(), False),
        "path": Field(Nullable(Str(nonempty=True))),     # null: standard output
        "format": Field(Str(choices=("json", "common")), "json"),
        "fields": Field(ListOf(Str(choices=ACCESS_LOG_FIELDS)), []),          # empty: every field
        "exclude_fields": Field(ListOf(Str(choices=ACCESS_LOG_FIELDS)), []),
        "drop_query": Field(Bool(), False),
        "headers": Field(ListOf(Str(check=header_name_error)), []),          # request headers to capture
        "redact_headers": Field(ListOf(Str(check=header_name_error)),
                                ["Authorization", "Proxy-Authorization", "Cookie"]),
        "buffer_size": Field(Int(minimum=0, maximum=16 << 20), 65536),
        "flush_interval": Field(Duration(), 0.1),
        "filters": Field(
            Table({"status": Field(ListOf(Str(check=_status_range_error)), []),
                   "min_duration": Field(Duration(), 0.0)}),
            {},
        ),
    }
)

TRACE_PROPAGATION = ("tracecontext", "b3", "b3multi")

TRACING = Table(
    {
        "enabled": Field(Bool(), False),
        "service_name": Field(Str(nonempty=True), "a3s-gateway"),
        "sample_rate": Field(Number(minimum=0, maximum=1), 1.0),
        "propagation": Field(ListOf(Str(choices=TRACE_PROPAGATION), min_items=1,
                                    too_few="list at least one of " + ", ".join(TRACE_PROPAGATION)),
                             ["tracecontext"]),
        "otlp": Field(
            Nullable(
                Table(
                    {
                        "endpoint": Field(Str(check=url_check("http", "https")), required=True),
                        "headers": Field(MapOf(Str(check=header_value_error), key_check=header_name_error), {}),
                        "batch_size": Field(Int(minimum=1, maximum=65536), 512),
                        "max_queue": Field(Int(minimum=1, maximum=1 << 20), 8192),
                        "flush_interval": Field(Duration(), 1.0),
                        "timeout": Field(Duration(), 5.0),
                    }
                )
            )
        ),
    }
)

SECTIONS = ("entrypoints", "routers", "services", "middlewares")
"""The named-definition tables (``<section>.<name>``); conf.d files may add to these."""

CONFIG = Table(
    {
        "entrypoints": Field(MapOf(ENTRYPOINT), {}),
        "routers": Field(MapOf(ROUTER), {}),
        "services": Field(MapOf(SERVICE), {}),
        "middlewares": Field(MapOf(MIDDLEWARE), {}),
        "providers": Field(PROVIDERS, {}),
        "acme": Field(Nullable(ACME)),
        "admin": Field(ADMIN, {}),
        "access_log": Field(ACCESS_LOG, {}),
        "tracing": Field(TRACING, {}),
        "limits": Field(LIMITS, {}),
        "serving": Field(SERVING_CLUSTER, {}),
    }
)
