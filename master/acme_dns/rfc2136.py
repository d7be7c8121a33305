"""RFC 2136 dynamic updates, TSIG-signed (RFC 8945), for ACME DNS-01: works with BIND, Knot, PowerDNS, Windows DNS.

The zone is ``zone`` or found by SOA queries to ``nameserver`` (walking up from the record's name). Each update
goes over TCP to ``nameserver`` and must answer NOERROR; anything else (``NOTAUTH`` for a bad key, ``REFUSED``
for a zone that does not allow it) raises with the rcode's name. ``present`` adds one TXT value to the RRset and
``cleanup`` deletes exactly that value, so the two values of a wildcard-plus-bare-domain order coexist.

Propagation: the record must be answered, with the value, by every authoritative server of the zone (its NS
records, port 53) or by every server in ``check_nameservers``; they are asked directly, without recursion,
every ``polling_interval`` until ``propagation_timeout``.
"""

from __future__ import annotations

import time
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update

from ...shared.config.schema import parse_address


class Rfc2136:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.host, self.port = parse_address(settings["nameserver"])
        self.keyname = dns.name.from_text(settings["tsig_key_name"])
        self.keyring = dns.tsigkeyring.from_text({settings["tsig_key_name"]: settings["tsig_secret"]})
        self.algorithm = dns.name.from_text(settings["tsig_algorithm"])
        self._zones: dict[str, dns.name.Name] = {}

    def zone(self, fqdn: str) -> dns.name.Name:
        if self.settings["zone"]:
            return dns.name.from_text(self.settings["zone"])
        if fqdn not in self._zones:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers, resolver.port = [self.host], self.port
            self._zones[fqdn] = dns.resolver.zone_for_name(fqdn, resolver=resolver,
                                                           lifetime=self.settings["timeout"])
        return self._zones[fqdn]

    def _update(self, fqdn: str, value: str, add: bool) -> None:
        update = dns.update.UpdateMessage(self.zone(fqdn), keyring=self.keyring, keyname=self.keyname,
                                          keyalgorithm=self.algorithm)
        name = dns.name.from_text(fqdn)
        if add:
            update.add(name, self.settings["ttl"], dns.rdatatype.TXT, f'"{value}"')
        else:
            update.delete(name, dns.rdatatype.TXT, f'"{value}"')
        try:
            answer = dns.query.tcp(update, self.host, port=self.port, timeout=self.settings["timeout"])
        except dns.tsig.PeerError as e:
            raise RuntimeError(f"RFC 2136 update of {fqdn} TXT: {self.settings['nameserver']} rejected the TSIG "
                               f"key '{self.settings['tsig_key_name']}' ({type(e).__name__}: wrong secret or "
                               "algorithm?)") from e
        if answer.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"RFC 2136 update of {fqdn} TXT refused by {self.settings['nameserver']}: "
                               f"{dns.rcode.to_text(answer.rcode())}")

    def present(self, fqdn: str, value: str) -> None:
        self._update(fqdn, value, add=True)

    def cleanup(self, fqdn: str, value: str) -> None:
        self._update(fqdn, value, add=False)

    def _servers(self, fqdn: str) -> list[tuple[str, int]]:
        if self.settings["check_nameservers"]:
            return [parse_address(s) for s in self.settings["check_nameservers"]]
        zone = self.zone(fqdn)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [self.host], self.port
        hosts = [str(ns.target) for ns in resolver.resolve(zone, "NS", lifetime=self.settings["timeout"])]
        return [(a.address, 53) for h in hosts for a in dns.resolver.resolve(h, "A", lifetime=self.settings["timeout"])]

    def _answers(self, fqdn: str, server: tuple[str, int]) -> set[str]:
        query = dns.message.make_query(fqdn, dns.rdatatype.TXT)
        query.flags &= ~dns.flags.RD
        try:
            reply = dns.query.udp(query, server[0], port=server[1], timeout=self.settings["timeout"])
        except dns.exception.DNSException:
            return set()                # asked again at the next poll
        return {b"".join(r.strings).decode() for rrset in reply.answer for r in rrset
                if rrset.rdtype == dns.rdatatype.TXT}

    def wait_propagated(self, records: list[tuple[str, str]]) -> None:
        deadline = time.monotonic() + self.settings["propagation_timeout"]
        servers = {fqdn: self._servers(fqdn) for fqdn, _ in records}
        while True:
            missing = [(fqdn, f"{host}:{port}") for fqdn, value in records for host, port in servers[fqdn]
                       if value not in self._answers(fqdn, (host, port))]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"DNS-01 records not visible after {self.settings['propagation_timeout']:g}s: "
                                   + ", ".join(f"{f} at {s}" for f, s in missing[:5]))
            time.sleep(self.settings["polling_interval"])
