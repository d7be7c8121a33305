"""Unit tests for a3s_gateway.shared.config: loading, env substitution, schema, validation, conf.d, redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from a3s_gateway.shared.config import DEFAULT_SERVICE_NAMES, ConfigError, GatewayConfig
from a3s_gateway.shared.config.middleware_types import MIDDLEWARE_TYPES
from a3s_gateway.shared.errors import Problem

# The "Configuration Model" example from the seed README, verbatim.
SEED_TOML = r"""
# gateway.toml

[entrypoints.web]
address = "0.0.0.0:80"

[entrypoints.websecure]
address = "0.0.0.0:443"
[entrypoints.websecure.tls]
cert_file = "/etc/certs/cert.pem"
key_file = "/etc/certs/key.pem"

[entrypoints.tcp-db]
address = "0.0.0.0:5432"
protocol = "tcp"
max_connections = 100
tcp_allowed_ips = ["10.0.0.0/8", "192.168.1.0/24"]

[routers.api]
rule = "Host(`api.example.com`) && PathPrefix(`/v1`)"
service = "api-service"
entrypoints = ["websecure"]
middlewares = ["auth-jwt", "rate-limit"]

[services.api-service.load_balancer]
strategy = "round-robin"
[[services.api-service.load_balancer.servers]]
url = "http://127.0.0.1:8001"
[[services.api-service.load_balancer.servers]]
url = "http://127.0.0.1:8002"

[middlewares.auth-jwt]
type = "jwt"
value = "${JWT_SECRET}"

[middlewares.rate-limit]
type = "rate-limit"
rate = 100
burst = 50

[middlewares.forward-auth]
type = "forward-auth"
forward_auth_url = "http://auth.internal:9090/verify"
forward_auth_response_headers = ["X-User-Id", "X-User-Role"]

[middlewares.body-limit]
type = "body-limit"
max_body_bytes = 1048576  # 1MB

# Requires: cargo build --features redis
[middlewares.rate-limit-redis]
type = "rate-limit-redis"
rate = 200
burst = 100
redis_url = "redis://127.0.0.1:6379"

[providers.file]
watch = true
directory = "/etc/gateway/conf.d/"

# Health-based service discovery (optional)
[providers.discovery]
poll_interval_secs = 30
timeout_secs = 5

[[providers.discovery.seeds]]
url = "http://10.0.0.5:8080"

[[providers.discovery.seeds]]
url = "http://10.0.0.6:8080"
"""

JWT = "s3cr3t-jwt-value"


def problems_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> set[tuple[str, str, str | None]]:
    return {(p.path, p.message, p.suggestion) for p in excinfo.value.problems}


def with_certs(text: str, folder: Path) -> str:
    """Write a real self-signed pair (validation loads it) and point the config at it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return text.replace("/etc/certs/", f"{folder}/")


@pytest.fixture(autouse=True)
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", JWT)


# ---------------------------------------------------------------------------------------------- seed example


def test_seed_example_reports_exactly_the_missing_tls_files(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(SEED_TOML)
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_file(path)
    assert excinfo.value.problems == [
        Problem(
            str(path), "entrypoints.websecure.tls.cert_file", "file '/etc/certs/cert.pem' does not exist"
        ),
        Problem(str(path), "entrypoints.websecure.tls.key_file", "file '/etc/certs/key.pem' does not exist"),
    ]
    assert str(excinfo.value).splitlines()[0] == (
        f"{path}: entrypoints.websecure.tls.cert_file: file '/etc/certs/cert.pem' does not exist"
    )


def test_seed_example_loads_and_normalizes(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(with_certs(SEED_TOML, tmp_path))
    cfg = GatewayConfig.from_file(path)

    assert cfg.source == str(path)
    assert cfg.summary() == f"{path}: OK (3 entrypoints, 1 router, 1 service, 5 middlewares)"
    assert cfg.entrypoints["web"] == {
        "address": "0.0.0.0:80",
        "protocol": "http",
        "tls": None,
        "max_connections": None,
        "tcp_allowed_ips": [],
        "forwarded_headers": {"trusted_ips": []},
        "proxy_protocol": None,
        "http3": False,
        "udp": {"idle_timeout": 30.0, "max_sessions": 10000},
        "host": "0.0.0.0",
        "port": 80,
    }
    assert cfg.entrypoints["websecure"]["tls"] == {
        "cert_file": f"{tmp_path}/cert.pem",
        "key_file": f"{tmp_path}/key.pem",
        "min_version": "1.2",
        "acme": False,
        "certificates": [],
        "client_ca_file": None,
    }
    assert cfg.entrypoints["tcp-db"]["max_connections"] == 100
    rule = "Host(`api.example.com`) && PathPrefix(`/v1`)"
    assert cfg.routers["api"] == {
        "rule": rule,
        "service": "api-service",
        "entrypoints": ["websecure"],
        "middlewares": ["auth-jwt", "rate-limit"],
        "priority": len(rule),
        "tls": None,
    }
    lb = cfg.services["api-service"]["load_balancer"]
    assert lb == {
        "strategy": "round-robin",
        "servers": [
            {"url": "http://127.0.0.1:8001", "weight": 1},
            {"url": "http://127.0.0.1:8002", "weight": 1},
        ],
        "health_check": None,
        "sticky": None,
        "affinity": None,
        "agent_health": None,
        "pass_host_header": True,
        "http_version": "1.1",
        "proxy_protocol": None,
        "timeouts": {"connect": 5.0, "response_header": 60.0, "idle": 90.0},
        "passive_health": {"max_failures": 5, "cooldown": 10.0, "statuses": []},
        "outlier_detection": None,
        "tls": {"ca_file": None, "insecure_skip_verify": False},
    }
    jwt = cfg.middlewares["auth-jwt"]
    assert (jwt["value"], jwt["alg"], jwt["header"]) == (JWT, "HS256", "Authorization")
    assert cfg.middlewares["rate-limit"] == {"type": "rate-limit", "rate": 100.0, "burst": 50.0, "period": 1.0,
                                             "key": "client-ip"}
    assert cfg.middlewares["rate-limit-redis"]["redis_url"] == "redis://127.0.0.1:6379"
    assert cfg.data["providers"] == {
        "file": {"watch": True, "directory": "/etc/gateway/conf.d/"},
        "discovery": {
            "seeds": [{"url": "http://10.0.0.5:8080"}, {"url": "http://10.0.0.6:8080"}],
            "poll_interval_secs": 30,
            "timeout_secs": 5,
            "failure_threshold": 3,
        },
        "dns": None,
        "kubernetes": None,
        "redis": None, "etcd": None, "consul": None, "docker": None,     # the store providers: off unless given
    }
    assert cfg.data["admin"] == {
        "enabled": True,
        "address": "127.0.0.1:9090",
        "token": None,
        "host": "127.0.0.1",
        "port": 9090,
    }
    assert json.loads(json.dumps(cfg.data)) == cfg.data
    assert GatewayConfig.from_dict(cfg.to_dict()) == cfg  # normalization is idempotent


SEED_YAML = """
entrypoints:
  web: {address: "0.0.0.0:80"}
  websecure:
    address: "0.0.0.0:443"
    tls: {cert_file: /etc/certs/cert.pem, key_file: /etc/certs/key.pem}
  tcp-db:
    address: "0.0.0.0:5432"
    protocol: tcp
    max_connections: 100
    tcp_allowed_ips: ["10.0.0.0/8", "192.168.1.0/24"]
routers:
  api:
    rule: "Host(`api.example.com`) && PathPrefix(`/v1`)"
    service: api-service
    entrypoints: [websecure]
    middlewares: [auth-jwt, rate-limit]
services:
  api-service:
    load_balancer:
      strategy: round-robin
      servers:
        - url: http://127.0.0.1:8001
        - url: http://127.0.0.1:8002
middlewares:
  auth-jwt: {type: jwt, value: "${JWT_SECRET}"}
  rate-limit: {type: rate-limit, rate: 100, burst: 50}
  forward-auth:
    type: forward-auth
    forward_auth_url: http://auth.internal:9090/verify
    forward_auth_response_headers: [X-User-Id, X-User-Role]
  body-limit: {type: body-limit, max_body_bytes: 1048576}
  rate-limit-redis: {type: rate-limit-redis, rate: 200, burst: 100, redis_url: "redis://127.0.0.1:6379"}
providers:
  file: {watch: true, directory: /etc/gateway/conf.d/}
  discovery:
    poll_interval_secs: 30
    timeout_secs: 5
    seeds: [{url: "http://10.0.0.5:8080"}, {url: "http://10.0.0.6:8080"}]
"""


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_equivalent_gives_the_same_config(tmp_path: Path, suffix: str) -> None:
    toml_path = tmp_path / "gateway.toml"
    toml_path.write_text(with_certs(SEED_TOML, tmp_path))
    yaml_path = tmp_path / f"gateway{suffix}"
    yaml_path.write_text(with_certs(SEED_YAML, tmp_path))
    assert GatewayConfig.from_file(yaml_path) == GatewayConfig.from_file(toml_path)
    assert GatewayConfig.from_yaml(with_certs(SEED_YAML, tmp_path)) == GatewayConfig.from_file(toml_path)


def test_relative_path_is_resolved_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gw.toml").write_text('[entrypoints.web]\naddress = ":8000"\n')
    monkeypatch.chdir(tmp_path)
    cfg = GatewayConfig.from_file("gw.toml")
    assert cfg.source == "gw.toml"
    assert cfg.entrypoints["web"]["port"] == 8000


# ------------------------------------------------------------------------------------------ parse errors


def test_unreadable_file_and_syntax_errors_are_problems_at_the_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_file(missing)
    assert [(p.file, p.path, p.message) for p in excinfo.value.problems] == [
        (str(missing), "", "cannot read file: No such file or directory")
    ]

    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_toml('[routers.a]\nrule = "x\n', source="bad.toml")
    (problem,) = excinfo.value.problems
    assert (problem.file, problem.path) == ("bad.toml", "")
    assert problem.message.startswith("invalid TOML:") and "line 2" in problem.message

    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_yaml("routers:\n  a: [1,\n", source="bad.yaml")
    (problem,) = excinfo.value.problems
    assert problem.message.startswith("invalid YAML:") and "(at line 3, column 1)" in problem.message

    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_yaml("- 1\n- 2\n")
    assert problems_of(excinfo) == {("", "expected a table, got a list", None)}


# ---------------------------------------------------------------------------------------- env substitution


def test_env_substitution_with_default_literal_and_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8081")
    monkeypatch.delenv("MISSING_HOST", raising=False)
    monkeypatch.setenv("EMPTY", "")
    cfg = GatewayConfig.from_toml(
        """
        [entrypoints.web]
        address = "${LISTEN_HOST:-127.0.0.1}:${PORT}"
        [middlewares.h]
        type = "headers"
        request_headers = { X-Literal = "$${NOT_A_VAR}", X-Empty = "${EMPTY:-fallback}", X-Set = "${EMPTY}" }
        """
    )
    assert cfg.entrypoints["web"]["address"] == "127.0.0.1:8081"
    assert cfg.middlewares["h"]["request_headers"] == {
        "X-Literal": "${NOT_A_VAR}",
        "X-Empty": "fallback",
        "X-Set": "",
    }

    monkeypatch.delenv("JWT_SECRET")
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_toml(
            '[middlewares.auth-jwt]\ntype = "jwt"\nvalue = "${JWT_SECRET}"\n', source="g.toml"
        )
    assert [str(p) for p in excinfo.value.problems] == [
        (
            "g.toml: middlewares.auth-jwt.value: environment variable 'JWT_SECRET' is not set "
            "(use ${JWT_SECRET:-default} to give a default)"
        )
    ]


def test_env_substitution_in_lists_and_malformed_references() -> None:
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_yaml(
            "middlewares:\n  s: {type: strip-prefix, prefixes: ['/a', '${1BAD}', '/b${']}\n"
        )
    assert problems_of(excinfo) == {
        (
            "middlewares.s.prefixes[1]",
            "invalid variable reference '${1BAD}' (expected ${NAME} or ${NAME:-default})",
            None,
        ),
        ("middlewares.s.prefixes[1]", "'${1BAD}' must start with '/'", None),
        ("middlewares.s.prefixes[2]", "unterminated '${' (write '$${' for a literal '${')", None),
    }


def test_from_dict_takes_values_literally() -> None:
    cfg = GatewayConfig.from_dict({"middlewares": {"j": {"type": "jwt", "value": "${JWT_SECRET}"}}})
    assert cfg.middlewares["j"]["value"] == "${JWT_SECRET}"


# ------------------------------------------------------------------------------------ every problem at once

BROKEN_TOML = """
[entrypoints.web]
address = "0.0.0.0:99999"
protocol = "htpp"

[routers.api]
rule = "Host(`a.example`) &&"
service = "api-svc"
entrypoints = ["webb"]
middlewares = ["auth-jwtt"]
priorty = 5

[services.api-service.load_balancer]
strategy = "round_robin"
servers = [{ url = "http://127.0.0.1:8001" }, { url = "ftp://127.0.0.1:21", weight = "5" }]
[services.api-service.load_balancer.health_check]
path = "health"
interval = "10 seconds"

[services.empty.load_balancer]
servers = []

[middlewares.auth-jwt]
type = "jwt"
value = ""

[middlewares.cors]
type = "cors"
prefixes = ["/x"]

[middlewares.limit]
type = "rate-limt"

[middlewares.strip]
type = "strip-prefix"
"""


def test_broken_file_reports_every_problem_with_path_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BROKEN_TOML)
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_file(path)
    assert {p.file for p in excinfo.value.problems} == {str(path)}
    found = problems_of(excinfo)
    expected = {
        (
            "entrypoints.web.address",
            "invalid address '0.0.0.0:99999': port must be a number from 1 to 65535, got '99999'",
            None,
        ),
        ("entrypoints.web.protocol", "must be one of 'http', 'tcp', 'udp', got 'htpp'", "http"),
        ("routers.api.priorty", "unknown key 'priorty'", "priority"),
        ("routers.api.service", "unknown service 'api-svc'", "api-service"),
        ("routers.api.entrypoints[0]", "unknown entrypoint 'webb'", "web"),
        ("routers.api.middlewares[0]", "unknown middleware 'auth-jwtt'", "auth-jwt"),
        (
            "services.api-service.load_balancer.strategy",
            "must be one of 'round-robin', 'weighted', 'least-connections', 'random', got 'round_robin'",
            "round-robin",
        ),
        (
            "services.api-service.load_balancer.servers[1].url",
            "URL 'ftp://127.0.0.1:21' must start with http:// or https:// or h2c:// or tcp:// or udp:// or unix:// or "
            "unix+h2c:// or vsock:// or vsock+h2c://",
            None,
        ),
        ("services.api-service.load_balancer.servers[1].weight", "expected an integer, got string '5'", None),
        ("services.api-service.load_balancer.health_check.path", "'health' must start with '/'", None),
        (
            "services.api-service.load_balancer.health_check.interval",
            "expected a duration like '10s', '500ms', '1m' or a number of seconds, got string '10 seconds'",
            None,
        ),
        ("services.empty.load_balancer.servers", "service has no servers", None),
        ("middlewares.auth-jwt.value", "must not be empty", None),
        ("middlewares.cors.prefixes", "key 'prefixes' does not apply to middleware type 'cors'", None),
        (
            "middlewares.limit.type",
            "must be one of "
            + ", ".join(repr(t) for t in MIDDLEWARE_TYPES)
            + ", got 'rate-limt'",
            "rate-limit",
        ),
        ("middlewares.strip.prefixes", "required key is missing", None),
    }
    rule_problems = found - expected
    assert expected <= found
    # The rule grammar reports the column of the error.
    assert rule_problems == {
        (
            "routers.api.rule",
            "invalid http rule: column 21: expected a matcher, '!' or '(' after '&&', got end of rule",
            None,
        )
    }
    assert (
        f"{path}: routers.api.service: unknown service 'api-svc' (did you mean 'api-service'?)"
        in str(excinfo.value).splitlines()
    )


def test_unknown_keys_at_every_level() -> None:
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_dict(
            {
                "entrypointz": {},
                "entrypoints": {
                    "web": {"address": ":80", "adress": "x", "tls": {"acme": True, "min_versoin": "1.3"}}
                },
                "services": {
                    "s": {
                        "load_balancer": {"servers": [{"url": "http://a:1", "wieght": 2}]},
                        "loadbalancer": {},
                    }
                },
                "providers": {"file": {"watch": True, "directroy": "x"}, "dnz": {}},
                "admin": {"enabeld": False},
                "middlewares": {"k": {"type": "api-key", "keys": ["a"], "headr": "X"}},
            }
        )
    assert problems_of(excinfo) == {
        ("entrypointz", "unknown key 'entrypointz'", "entrypoints"),
        ("entrypoints.web.adress", "unknown key 'adress'", "address"),
        ("entrypoints.web.tls.min_versoin", "unknown key 'min_versoin'", "min_version"),
        ("services.s.load_balancer.servers[0].wieght", "unknown key 'wieght'", "weight"),
        ("services.s.loadbalancer", "unknown key 'loadbalancer'", "load_balancer"),
        ("providers.file.directroy", "unknown key 'directroy'", "directory"),
        ("providers.dnz", "unknown key 'dnz'", "dns"),
        ("admin.enabeld", "unknown key 'enabeld'", "enabled"),
        ("middlewares.k.headr", "unknown key 'headr'", "header"),
    }


def test_required_keys_and_cross_checks() -> None:
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_dict(
            {
                "entrypoints": {
                    "a": {"address": "127.0.0.1:80", "tls": {}},
                    "b": {"address": ":80"},
                    "u": {"address": ":80", "protocol": "udp", "tcp_allowed_ips": ["10.0.0.0/33"]},
                    "v6": {"address": "[::1]:70000"},
                    "name": {"address": "example.com:80"},
                },
                "routers": {"r": {"service": "whoami@internal"}},
                "services": {"s": {}},
                "middlewares": {"m": {}, "rl": {"type": "rate-limit", "rate": 0}},
                "providers": {"discovery": {}},
                "admin": {"address": "0.0.0.0:80"},
            }
        )
    assert problems_of(excinfo) == {
        ("entrypoints.a.tls.cert_file", "required unless acme = true or certificates are given", None),
        ("entrypoints.a.tls.key_file", "required unless acme = true or certificates are given", None),
        ("entrypoints.b.address", "address ':80' is already used by entrypoints.a.address", None),
        ("entrypoints.u.tcp_allowed_ips[0]", "'10.0.0.0/33' is not an IP address or CIDR range", None),
        (
            "entrypoints.v6.address",
            "invalid address '[::1]:70000': port must be a number from 1 to 65535, got '70000'",
            None,
        ),
        (
            "entrypoints.name.address",
            "invalid address 'example.com:80': host must be an IP address or 'localhost', got 'example.com'",
            None,
        ),
        ("routers.r.rule", "required key is missing", None),
        ("services.s.load_balancer",
         "required key is missing (or another service kind: weighted, failover, mirroring, serving)", None),
        ("middlewares.m.type", "required key is missing", None),
        ("middlewares.rl.rate", "must be greater than 0, got 0", None),
        ("providers.discovery.seeds", "required key is missing", None),
        ("admin.address", "address '0.0.0.0:80' is already used by entrypoints.a.address", None),
        ("admin.token", "required: admin.address '0.0.0.0:80' is not a loopback address; set admin.token (clients "
         "send 'Authorization: Bearer <token>') or bind admin.address to 127.0.0.1", None),
    }


def test_tcp_router_rules_are_checked_as_tcp_rules() -> None:
    base = {
        "entrypoints": {"db": {"address": ":5432", "protocol": "tcp"}, "web": {"address": ":80"}},
        "services": {"pg": {"load_balancer": {"servers": [{"url": "tcp://10.0.0.1:5432"}]}}},
    }
    cfg = GatewayConfig.from_dict(
        base | {"routers": {"pg": {"rule": "HostSNI(`*`)", "service": "pg", "entrypoints": ["db"]}}}
    )
    assert cfg.routers["pg"]["priority"] == len("HostSNI(`*`)")
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_dict(
            base | {"routers": {"pg": {"rule": "PathPrefix(`/`)", "service": "pg", "entrypoints": ["db"]}}}
        )
    ((path, message, _),) = problems_of(excinfo)
    assert path == "routers.pg.rule"
    assert message.startswith("invalid tcp rule: column 1: PathPrefix is not allowed in tcp rules")
    # a router on any http entrypoint uses the http grammar
    with pytest.raises(ConfigError):
        GatewayConfig.from_dict(
            base
            | {"routers": {"pg": {"rule": "HostSNI(`*`)", "service": "pg", "entrypoints": ["db", "web"]}}}
        )


# ----------------------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("10s", 10.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        ("1m30s", 90.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_durations_are_float_seconds(given: object, seconds: float) -> None:
    cfg = GatewayConfig.from_dict(
        {
            "services": {
                "s": {
                    "load_balancer": {
                        "servers": [{"url": "http://a:1/"}],
                        "health_check": {"path": "/h", "interval": given},
                        "timeouts": {"idle": given},
                    }
                }
            }
        }
    )
    lb = cfg.services["s"]["load_balancer"]
    assert lb["health_check"] == {
        "path": "/h",
        "interval": seconds,
        "timeout": 5.0,
        "unhealthy_threshold": 3,
        "healthy_threshold": 1,
        "method": "GET",
        "expected_status": "200-399",
        "headers": {},
        "hostname": None,
    }
    assert lb["timeouts"] == {"connect": 5.0, "response_header": 60.0, "idle": seconds}
    assert lb["servers"] == [{"url": "http://a:1", "weight": 1}]


@pytest.mark.parametrize("given", ["10", "10 s", "-1s", "s", "", True, -2, float("inf")])
def test_invalid_durations_are_problems(given: object) -> None:
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_dict(
            {
                "services": {
                    "s": {
                        "load_balancer": {"servers": [{"url": "http://a:1"}], "timeouts": {"connect": given}}
                    }
                }
            }
        )
    ((path, message, _),) = problems_of(excinfo)
    assert path == "services.s.load_balancer.timeouts.connect"
    assert message.startswith("expected a duration like '10s'")


def test_middleware_defaults_and_addresses() -> None:
    cfg = GatewayConfig.from_dict(
        {
            "entrypoints": {"v6": {"address": "[::1]:8443"}, "lo": {"address": "localhost:8080"}},
            "middlewares": {
                "rl": {"type": "rate-limit", "rate": 7},
                "cors": {"type": "cors"},
                "retry": {"type": "retry"},
                "cb": {"type": "circuit-breaker", "cooldown_secs": "1m"},
                "zip": {"type": "compress"},
                "key": {"type": "api-key", "keys": ["k1"]},
            },
        }
    )
    assert (cfg.entrypoints["v6"]["host"], cfg.entrypoints["v6"]["port"]) == ("::1", 8443)
    assert (cfg.entrypoints["lo"]["host"], cfg.entrypoints["lo"]["port"]) == ("localhost", 8080)
    assert cfg.middlewares == {
        "rl": {"type": "rate-limit", "rate": 7.0, "burst": 7.0, "period": 1.0, "key": "client-ip"},
        "cors": {
            "type": "cors",
            "allowed_origins": ["*"],
            "allowed_methods": ["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            "allowed_headers": ["Content-Type", "Authorization"],
            "expose_headers": [],
            "allow_credentials": False,
            "max_age": 86400,
        },
        "retry": {"type": "retry", "max_retries": 3, "retry_interval_ms": 100, "backoff": "constant",
                  "retry_on_statuses": [502, 503, 504], "replay_buffer_bytes": 65536, "budget_percent": 20.0,
                  "min_retry_concurrency": 3},
        "cb": {
            "type": "circuit-breaker",
            "failure_threshold": 5,
            "success_threshold": 1,
            "cooldown_secs": 60.0,
            "failure_statuses": [500, 502, 503, 504],
        },
        "zip": {"type": "compress", "min_bytes": 1024, "level": 6},
        "key": {"type": "api-key", "header": "X-API-Key", "keys": ["k1"], "query_param": None,
                "forward_key": False},
    }


def test_derived_keys_must_match() -> None:
    data = GatewayConfig.default().to_dict()
    data["entrypoints"]["web"]["port"] = 1234
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_dict(data)
    assert problems_of(excinfo) == {
        ("entrypoints.web.port", "is computed from the other keys (would be 8080); leave it out", None)
    }


# -------------------------------------------------------------------------------------------- redaction


def test_redaction_hides_every_secret(tmp_path: Path) -> None:
    secrets = [JWT, "hunter2", "api-key-one", "api-key-two", "redispw", "webhook-secret", "bearer-xyz"]
    cfg = GatewayConfig.from_dict(
        {
            "routers": {
                "r": {
                    "rule": "PathPrefix(`/`)",
                    "service": "whoami@internal",
                    "middlewares": ["jwt", "basic", "keys", "redis", "hdr"],
                }
            },
            "middlewares": {
                "jwt": {"type": "jwt", "value": JWT},
                "basic": {"type": "basic-auth", "username": "admin", "password": "hunter2"},
                "keys": {"type": "api-key", "keys": ["api-key-one", "api-key-two"]},
                "redis": {
                    "type": "rate-limit-redis",
                    "rate": 1,
                    "redis_url": "redis://:redispw@cache:6379/0",
                },
                "hdr": {
                    "type": "headers",
                    "request_headers": {"Authorization": "bearer-xyz", "X-Plain": "ok"},
                },
            },
        }
    )
    # Keys added later by middleware modules are covered by name.
    cfg.data["middlewares"]["hdr"]["secret"] = "webhook-secret"
    redacted = cfg.redacted()
    dumped = json.dumps(redacted)
    assert not [s for s in secrets if s in dumped]
    assert redacted["middlewares"]["redis"]["redis_url"] == "redis://:***@cache:6379/0"
    assert redacted["middlewares"]["keys"]["keys"] == ["***", "***"]
    basic = redacted["middlewares"]["basic"]
    assert (basic["username"], basic["password"], basic["users"]) == ("admin", "***", [])
    assert redacted["middlewares"]["hdr"]["request_headers"] == {"Authorization": "***", "X-Plain": "ok"}
    assert cfg.middlewares["jwt"]["value"] == JWT  # the config itself is untouched


# ---------------------------------------------------------------------------------------------- conf.d


def write_main(tmp_path: Path, directory: str = "conf.d") -> Path:
    main = tmp_path / "gateway.toml"
    main.write_text(
        f"""
        [entrypoints.web]
        address = "127.0.0.1:8080"
        [routers.home]
        rule = "Path(`/`)"
        service = "whoami@internal"
        [providers.file]
        directory = "{directory}"
        """
    )
    return main


def test_conf_d_fragments_are_merged(tmp_path: Path) -> None:
    main = write_main(tmp_path)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-api.toml").write_text(
        '[routers.api]\nrule = "PathPrefix(`/api`)"\nservice = "api"\n'
        '[services.api.load_balancer]\nservers = [{url = "http://127.0.0.1:9001"}]\n'
    )
    (conf_d / "20-auth.yaml").write_text(
        "middlewares:\n  auth: {type: basic-auth, username: u, password: p}\n"
    )
    (conf_d / "notes.txt").write_text("not a config")
    cfg = GatewayConfig.from_file(main)
    assert sorted(cfg.routers) == ["api", "home"]
    assert list(cfg.services) == ["api"]
    assert list(cfg.middlewares) == ["auth"]
    assert cfg.data["providers"]["file"] == {"watch": True, "directory": str(conf_d)}


def test_conf_d_duplicates_and_fragment_errors_name_their_files(tmp_path: Path) -> None:
    main = write_main(tmp_path)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    a, b = conf_d / "a.toml", conf_d / "b.yml"
    a.write_text(
        '[routers.home]\nrule = "Path(`/x`)"\nservice = "whoami@internal"\n'
        '[routers.shared]\nrule = "Path(`/s`)"\nservice = "nope"\n'
    )
    b.write_text(
        "routers:\n  shared: {rule: 'Path(`/t`)', service: whoami@internal}\nadmin: {enabled: false}\n"
    )
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_file(main)
    assert {(p.file, p.path, p.message, p.suggestion) for p in excinfo.value.problems} == {
        (str(a), "routers.home", f"'home' is defined in both '{main}' and '{a}'", None),
        (str(b), "routers.shared", f"'shared' is defined in both '{a}' and '{b}'", None),
        (str(b), "admin", "key 'admin' cannot be set in a conf.d file", None),
        (str(a), "routers.shared.service", "unknown service 'nope'", None),
    }


def test_missing_conf_d_directory_adds_nothing(tmp_path: Path) -> None:
    cfg = GatewayConfig.from_file(write_main(tmp_path, "does-not-exist"))
    assert list(cfg.routers) == ["home"]


# ---------------------------------------------------------------------------------- with_listen / default


def test_with_listen_overrides_or_creates_web() -> None:
    cfg = GatewayConfig.default()
    moved = cfg.with_listen("0.0.0.0:9000")
    assert moved.entrypoints["web"]["address"] == "0.0.0.0:9000"
    assert (moved.entrypoints["web"]["host"], moved.entrypoints["web"]["port"]) == ("0.0.0.0", 9000)
    assert cfg.entrypoints["web"]["port"] == 8080  # original untouched
    assert moved != cfg and moved.routers == cfg.routers

    no_web = GatewayConfig.from_dict({"entrypoints": {"db": {"address": ":5432", "protocol": "tcp"}}})
    created = no_web.with_listen(":8080")
    assert created.entrypoints["web"] == {
        "address": ":8080",
        "protocol": "http",
        "tls": None,
        "max_connections": None,
        "tcp_allowed_ips": [],
            "forwarded_headers": {"trusted_ips": []},
            "proxy_protocol": None,
        "http3": False,
        "udp": {"idle_timeout": 30.0, "max_sessions": 10000},
        "host": "0.0.0.0",
        "port": 8080,
    }
    with pytest.raises(ConfigError) as excinfo:
        cfg.with_listen("nonsense")
    assert [p.path for p in excinfo.value.problems] == ["entrypoints.web.address"]


def test_default_config() -> None:
    cfg = GatewayConfig.default()
    assert cfg.source == "<default>"
    assert cfg.entrypoints["web"]["address"] == "127.0.0.1:8080"
    assert cfg.entrypoints["web"]["protocol"] == "http"
    assert cfg.routers == {
        "default": {
            "rule": "PathPrefix(`/`)",
            "service": "whoami@internal",
            "entrypoints": [],
            "middlewares": [],
            "priority": 15,
            "tls": None,
        }
    }
    assert cfg.services == {} and cfg.middlewares == {}
    assert cfg.data["admin"]["address"] == "127.0.0.1:9090"
    assert "whoami@internal" in DEFAULT_SERVICE_NAMES
    assert cfg.summary() == "<default>: OK (1 entrypoint, 1 router, 0 services, 0 middlewares)"
    assert cfg == GatewayConfig.default() and cfg != GatewayConfig.default().with_listen(":1")


@pytest.mark.parametrize("address,token,ok", [
    ("127.0.0.1:9090", None, True), ("[::1]:9090", None, True), ("localhost:9090", None, True),
    ("127.0.0.2:9090", None, True), ("0.0.0.0:9090", None, False), (":9090", None, False),
    ("10.0.0.1:9090", None, False), ("[::]:9090", None, False), ("0.0.0.0:9090", "t0ken", True),
])
def test_admin_off_loopback_needs_a_token(address: str, token: str | None, ok: bool) -> None:
    admin = {"address": address} if token is None else {"address": address, "token": token}
    if ok:
        cfg = GatewayConfig.from_dict({"admin": admin})
        assert cfg.data["admin"]["token"] == token and cfg.redacted()["admin"]["token"] == (token and "***")
        return
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_dict({"admin": admin})
    assert [p.path for p in info.value.problems] == ["admin.token"]
    assert f"admin.address '{address}' is not a loopback address" in str(info.value)
    GatewayConfig.from_dict({"admin": {**admin, "enabled": False}})   # a disabled admin API needs nothing


def test_config_errors_never_quote_secrets() -> None:
    cases = [
        {"middlewares": {"k": {"type": "api-key", "keys": "SECRET-A"}}},
        {"middlewares": {"k": {"type": "api-key", "keys": [123456789]}}},
        {"middlewares": {"j": {"type": "jwt", "value": 987654321}}},
        {"middlewares": {"r": {"type": "rate-limit-redis", "rate": 1, "redis_url": "redis://:SECRET-B@h:99999"}}},
        {"middlewares": {"r": {"type": "rate-limit-redis", "rate": 1, "redis_url": "redis://:SECRET-C[h:1"}}},
        {"admin": {"address": "127.0.0.1:1", "token": 55555555}},
    ]
    for doc in cases:
        with pytest.raises(ConfigError) as info:
            GatewayConfig.from_dict(doc)
        text = str(info.value)
        for secret in ("SECRET-A", "123456789", "987654321", "SECRET-B", "SECRET-C", "55555555"):
            assert secret not in text, text


LB = {"load_balancer": {"servers": [{"url": "http://a:1"}]}}


def test_weighted_service_normalizes_children_and_drops_the_file_suffix() -> None:
    cfg = GatewayConfig.from_dict({"services": {"a": LB, "w": {"weighted": {"services": [{"name": "a@file"}]}}}})
    assert cfg.services["w"] == {"load_balancer": None, "failover": None, "mirroring": None, "serving": None,
                                 "weighted": {"services": [{"name": "a", "weight": 1}], "sticky": None}}
    assert cfg.services["a"]["weighted"] is None
    assert GatewayConfig.from_dict(cfg.to_dict()) == cfg


def test_weighted_unknown_children_cycles_and_two_kinds_are_reported_with_their_paths() -> None:
    def child(*names: str) -> dict:
        return {"weighted": {"services": [{"name": n} for n in names]}}

    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_dict({"services": {
            "canary": child("a", "v3"), "a": LB, "x": child("y"), "y": child("z"), "z": child("x"),
            "self": child("self"), "both": {**LB, **child("a")}, "empty": {"weighted": {"services": []}},
            "internal": child("whoami@internal"),
            "fo": {"failover": {"service": "a@file", "fallback": "nope"}}, "fo2": {"failover": {"service": "fo2"}},
            "fo3": {"failover": {"service": "a", "fallback": "x"}},
            "fo4": {"failover": {"service": "a", "fallback": "a", "errors": {"status": ["500-504", "6xx"]}}},
        }})
    assert problems_of(excinfo) == {
        ("services.canary.weighted.services[1].name", "unknown service 'v3'", None),
        ("services.z.weighted.services[0].name", "services form a cycle: x → y → z → x", None),
        ("services.self.weighted.services[0].name", "services form a cycle: self → self", None),
        ("services.both", "a service has exactly one kind, got load_balancer and weighted", None),
        ("services.empty.weighted.services", "a weighted service needs at least one child service", None),
        ("services.internal.weighted.services[0].name",
         "'whoami@internal' is built in and has no servers: it cannot be a child service", None),
        ("services.fo.failover.fallback", "unknown service 'nope'", None),
        ("services.fo2.failover.fallback", "required key is missing", None),
        ("services.fo2.failover.service", "services form a cycle: fo2 → fo2", None),
        ("services.fo4.failover.errors.status[1]", "expected a status or a range like '200-399', got '6xx'", None),
        ("services.fo4.failover.errors", "acts only on a failover that a router names; no router names this "
         "service", None),
    }


def test_mirroring_normalizes_with_defaults_and_reports_bad_mirrors_with_their_paths() -> None:
    routers = {"r": {"rule": "PathPrefix(`/`)", "service": "m"}}
    cfg = GatewayConfig.from_dict({"routers": routers, "services": {
        "a": LB, "m": {"mirroring": {"service": "a", "mirrors": [{"name": "a@file", "percent": 20}]}}}})
    assert cfg.services["m"]["mirroring"] == {"service": "a", "mirrors": [{"name": "a", "percent": 20}],
                                              "mirror_body": True, "max_body_bytes": 1 << 20, "timeout": 5.0,
                                              "max_in_flight": 256}
    assert GatewayConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_dict({"routers": routers, "services": {
            "a": LB,
            "m": {"mirroring": {"service": "a", "mirrors": [{"name": "v3"}, {"name": "a", "percent": 101}],
                                "timeout": "0s"}},
            "n": {"mirroring": {"service": "n", "mirrors": [{"name": "a"}] * 9}},
        }})
    assert problems_of(excinfo) == {
        ("services.m.mirroring.mirrors[0].name", "unknown service 'v3'", None),
        ("services.m.mirroring.mirrors[1].percent", "must be at most 100, got 101", None),
        ("services.m.mirroring.timeout", "must be greater than 0", None),
        ("services.n.mirroring.mirrors", "at most 8 mirrors per service (the plane counts each)", None),
        ("services.n.mirroring.service", "services form a cycle: n → n", None),
        ("services.n.mirroring", "mirrors only where a router names the service; no router names this service",
         None),
    }


def test_with_admin_moves_or_disables_the_admin_api() -> None:
    cfg = GatewayConfig.default()
    moved = cfg.with_admin("127.0.0.1:9191")
    assert (moved.data["admin"]["enabled"], moved.data["admin"]["host"], moved.data["admin"]["port"]) == (
        True, "127.0.0.1", 9191)
    assert cfg.data["admin"]["port"] == 9090  # original untouched
    assert cfg.with_admin("off").data["admin"]["enabled"] is False
    with pytest.raises(ConfigError) as excinfo:
        cfg.with_admin("nonsense")
    assert [p.path for p in excinfo.value.problems] == ["admin.address"]
