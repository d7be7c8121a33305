"""IP address sets: single addresses and CIDR ranges, IPv4 and IPv6, matched by integer mask-and-compare.

One matcher for every IP list in the gateway: the ``ClientIP`` rule, the ``ip-allow``/``ip-block``
middlewares and their ``trusted_proxies``, and the TCP entrypoint filter.

Invariants: IPv4-mapped IPv6 addresses (``::ffff:10.1.2.3``) and ranges (``::ffff:10.0.0.0/104``) meet plain
IPv4 as IPv4; an IPv6 integer never matches an IPv4 range; an unparseable address matches nothing. Host bits in
a range are ignored (``10.1.2.3/8`` is ``10.0.0.0/8``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _unmap(network: IPNetwork) -> IPNetwork:
    """``::ffff:10.0.0.0/104`` -> ``10.0.0.0/8``, so mapped rules and mapped clients meet as IPv4."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_network(text: str) -> IPNetwork:
    """The range of an address or CIDR (mapped IPv6 unmapped); raises ValueError."""
    return _unmap(ipaddress.ip_network(text.strip(), strict=False))


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> tuple[int, int] | None:
    """(IP version, address as int) for a client address, None when it is not one; cached, clients repeat."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address)


class IPSet:
    """A set of ranges; ``"10.1.2.3" in ipset``. Raises ValueError for an entry that is not an IP or CIDR."""

    __slots__ = ("ranges",)

    def __init__(self, entries: Iterable[str]) -> None:
        ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for entry in entries:
            network = parse_network(entry)
            ranges[network.version].append((int(network.network_address), int(network.netmask)))
        self.ranges = {version: tuple(pairs) for version, pairs in ranges.items()}

    def __bool__(self) -> bool:
        return bool(self.ranges[4] or self.ranges[6])

    def __contains__(self, text: object) -> bool:
        parsed = parse_address(text) if isinstance(text, str) else None
        if parsed is None:
            return False
        version, value = parsed
        for network, mask in self.ranges[version]:
            if value & mask == network:
                return True
        return False
