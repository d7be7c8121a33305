"""The settings of the providers that read routers, services and middlewares from a store or from container
labels: ``providers.redis``, ``providers.etcd``, ``providers.consul``, ``providers.docker``
(master/providers/<name>.py; the key layout is master/providers/kv.py).

Every one of them has ``debounce`` (how long a burst of changes is gathered into one rebuild) and ``max_backoff``
(the longest wait between reconnects to a lost source); the stores also ``root_key`` (the prefix of their keys).
"""

from __future__ import annotations

from typing import Any

from .schema import Bool, Duration, Field, ListOf, Nullable, Str, Table, address_error, url_check


def _common(fields: dict[str, Field]) -> Nullable:
    return Nullable(Table({
        "debounce": Field(Duration(), 0.2),
        "max_backoff": Field(Duration(), 10.0),
        **fields,
    }))


def _store(fields: dict[str, Field]) -> Nullable:
    return _common({"root_key": Field(Str(nonempty=True), "a3s"), **fields})


def _constraint_error(text: str) -> str | None:
    return None if "=" in text.strip("=!") else f"expected 'label=value' or 'label!=value', got {text!r}"


def _docker_endpoint_error(text: str) -> str | None:
    if text.startswith("unix:///") or (text.startswith("tcp://") and url_check("tcp", port_required=("tcp",))(text)
                                       is None):
        return None
    return f"expected unix:///path or tcp://host:port, got {text!r}"


STORE_PROVIDERS: dict[str, Any] = {
    "redis": Field(_store({
        "url": Field(Str(check=url_check("redis", "rediss", "unix")), "redis://127.0.0.1:6379/0"),
        # used only when the server cannot send keyspace notifications (managed Redis refuses CONFIG SET)
        "poll_interval": Field(Duration(), 5.0),
    })),
    "etcd": Field(_store({
        "endpoint": Field(Str(check=address_error), "127.0.0.1:2379"),
        "username": Field(Nullable(Str(nonempty=True))),
        "password": Field(Nullable(Str(nonempty=True))),    # secret: redacted, never logged
        "timeout": Field(Duration(), 5.0),
    })),
    "consul": Field(_store({
        "address": Field(Str(check=url_check("http", "https")), "http://127.0.0.1:8500"),
        "token": Field(Nullable(Str(nonempty=True))),       # ACL token, sent as X-Consul-Token; redacted
        "wait": Field(Duration(), 300.0),                   # how long one blocking query may be held
        "timeout": Field(Duration(), 5.0),
    })),
    "docker": Field(_common({
        "endpoint": Field(Str(check=_docker_endpoint_error), "unix:///var/run/docker.sock"),
        # tcp:// endpoints: TLS with this CA, and a client certificate (dockerd --tlsverify); null: plain HTTP
        "tls": Field(Nullable(Table({"ca_file": Field(Nullable(Str(nonempty=True))),
                                     "cert_file": Field(Nullable(Str(nonempty=True))),
                                     "key_file": Field(Nullable(Str(nonempty=True)))}))),
        "exposed_by_default": Field(Bool(), True),
        # the router of a container without router labels; {name} is the container's name, made DNS-safe
        "default_rule": Field(Str(nonempty=True), "Host(`{name}`)"),
        "constraints": Field(ListOf(Str(check=_constraint_error)), []),     # every one must hold
        "network": Field(Nullable(Str(nonempty=True))),        # whose address to use (default: the first)
        "host_address": Field(Str(nonempty=True), "127.0.0.1"),     # for containers on the host network
        "label_prefixes": Field(ListOf(Str(nonempty=True), min_items=1), ["a3s", "traefik"]),
    })),
}
"""``providers.<name>`` for each store provider, added to ``gateway_schema.PROVIDERS``."""
