"""``ip-allow`` and ``ip-block``: admit or refuse requests by client IP (addresses and CIDRs, IPv4 and IPv6).

The client IP is the TCP peer, unless the peer is one of ``trusted_proxies``: then it comes from
``X-Forwarded-For`` — the ``depth``-th address from the right when ``depth`` is set, else the rightmost one
that is not itself a trusted proxy. An address that cannot be determined or parsed is refused by both kinds
(fail closed: garbage in a header must not slip past a block list). Refusals are 403 JSON ``Forbidden``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...shared.ipmatch import IPSet, parse_address
from ..chain import Middleware, Reply, error_reply

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker


class ClientIPResolver:
    """The client address of an exchange, honouring ``X-Forwarded-For`` from trusted proxies only."""

    def __init__(self, trusted_proxies: list[str], depth: int) -> None:
        self.trusted = IPSet(trusted_proxies)
        self.depth = depth

    def __call__(self, ex: Exchange) -> str | None:
        peer = ex.conn.client_ip
        if not self.trusted or peer not in self.trusted:
            return peer
        hops = [h.strip() for h in ex.xff_in.decode("latin-1").split(",")] if ex.xff_in else []
        if self.depth:
            return hops[-self.depth] if len(hops) >= self.depth else None
        for hop in reversed(hops):
            if hop not in self.trusted:
                return hop
        return hops[0] if hops else peer


class _IpFilter(Middleware):
    admit_listed: bool
    list_key: str

    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.listed = IPSet(params[self.list_key])
        self.client_ip = ClientIPResolver(params["trusted_proxies"], params["depth"])

    def on_request(self, ex: Exchange) -> Reply | None:
        ip = self.client_ip(ex)
        if ip is None or parse_address(ip) is None or (ip in self.listed) is not self.admit_listed:
            return error_reply(403, "Forbidden")
        return None


class IpAllow(_IpFilter):
    admit_listed = True
    list_key = "allowed_ips"


class IpBlock(_IpFilter):
    admit_listed = False
    list_key = "blocked_ips"
