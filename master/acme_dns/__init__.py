"""Built-in DNS providers for ACME DNS-01 (``acme.dns_provider``): one module per provider, named by its ``type``.

A provider publishes a challenge's TXT record and removes it afterwards. The contract (``DnsProvider``):

* ``present(fqdn, value)`` **adds** the value: a wildcard and its bare domain have two authorizations with the
  same record name and different values, and both must be visible at once (a provider that replaces the RRset
  breaks such orders).
* ``cleanup(fqdn, value)`` removes only that value, and is called for every presented record even when the
  order failed.
* ``wait_propagated(records)`` returns once every record is answered by the servers the CA will ask (the zone's
  authoritative servers), or raises after the provider's ``propagation_timeout``.

A provider that talks to a DNS host's API is one more module here with the same three methods, and one more
``type`` in shared/config/acme_dns_schema.py.
"""

from __future__ import annotations

from typing import Any, Protocol


class DnsProvider(Protocol):
    def present(self, fqdn: str, value: str) -> None: ...

    def cleanup(self, fqdn: str, value: str) -> None: ...

    def wait_propagated(self, records: list[tuple[str, str]]) -> None: ...


def make(settings: dict[str, Any]) -> DnsProvider:
    """The provider ``settings["type"]`` names (its module imported only when used)."""
    if settings["type"] == "rfc2136":
        from .rfc2136 import Rfc2136
        return Rfc2136(settings)
    raise ValueError(f"unknown acme.dns_provider type {settings['type']!r}")
