"""The settings of the providers that read routers, services and middlewares from a store: ``providers.redis``,
``providers.etcd`` (master/providers/<name>.py; the key layout is master/providers/kv.py).

Every one of them shares ``root_key`` (the prefix its keys live under), ``debounce`` (how long a burst of changes
is gathered into one rebuild) and ``max_backoff`` (the longest wait between reconnects to a lost store).
"""

from __future__ import annotations

from typing import Any

from .schema import Duration, Field, Nullable, Str, Table, address_error, url_check


def _common(fields: dict[str, Field]) -> Nullable:
    return Nullable(Table({
        "root_key": Field(Str(nonempty=True), "a3s"),
        "debounce": Field(Duration(), 0.2),
        "max_backoff": Field(Duration(), 10.0),
        **fields,
    }))


STORE_PROVIDERS: dict[str, Any] = {
    "redis": Field(_common({
        "url": Field(Str(check=url_check("redis", "rediss", "unix")), "redis://127.0.0.1:6379/0"),
        # used only when the server cannot send keyspace notifications (managed Redis refuses CONFIG SET)
        "poll_interval": Field(Duration(), 5.0),
    })),
    "etcd": Field(_common({
        "endpoint": Field(Str(check=address_error), "127.0.0.1:2379"),
        "username": Field(Nullable(Str(nonempty=True))),
        "password": Field(Nullable(Str(nonempty=True))),    # secret: redacted, never logged
        "timeout": Field(Duration(), 5.0),
    })),
}
"""``providers.<name>`` for each store provider, added to ``gateway_schema.PROVIDERS``."""
