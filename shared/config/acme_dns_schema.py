"""``acme.dns_provider``: the built-in DNS providers that publish ACME DNS-01 records (master/acme_dns/).

``type`` names the provider (one module each in master/acme_dns/); today only ``rfc2136``, a TSIG-signed dynamic
update to the zone's primary server. ``propagation_timeout`` / ``polling_interval`` bound the wait until the
zone's authoritative servers (or ``check_nameservers``) answer with the value, before the CA is told to look.
"""

from __future__ import annotations

from .schema import Duration, Field, Int, ListOf, Nullable, Str, Table, address_error

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")

DNS_PROVIDER = Nullable(Table({
    "type": Field(Str(choices=("rfc2136",)), required=True),
    "nameserver": Field(Str(check=address_error), required=True),     # the primary that accepts updates
    "tsig_key_name": Field(Str(nonempty=True), required=True),
    "tsig_secret": Field(Str(nonempty=True), required=True),           # base64, as tsig-keygen writes it
    "tsig_algorithm": Field(Str(choices=TSIG_ALGORITHMS), "hmac-sha256"),
    "zone": Field(Nullable(Str(nonempty=True))),                       # default: found by SOA queries
    "ttl": Field(Int(minimum=1), 120),
    "timeout": Field(Duration(), 10.0),                                # one DNS exchange
    "propagation_timeout": Field(Duration(), 60.0),
    "polling_interval": Field(Duration(), 2.0),
    # "ip:port" of the servers that must answer with the value; default: the zone's NS servers on port 53
    "check_nameservers": Field(ListOf(Str(check=address_error)), []),
}))
