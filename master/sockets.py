"""Listening sockets, owned by the master for the life of the gateway.

Each entrypoint gets one ``SO_REUSEPORT`` socket per worker slot; the kernel spreads new connections over
them evenly. The master keeps every fd open, so when a worker dies the connections already queued in its
socket wait for the replacement instead of being reset (closing a reuseport socket drops its queue — see
research/anchors §4.3). Sockets are bound before privileges are dropped, so ports below 1024 work from a
root-started service that then runs as ``--user``.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket

from ..shared.compiled import spec_lids
from ..shared.errors import GatewayError

BACKLOG = 4096


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def url(scheme: str, address: tuple) -> str:
    """``scheme://host:port`` of a bound socket's ``getsockname()``: the address it really has."""
    host, port = address[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _scheme(ep: dict) -> str:
    protocol = ep.get("protocol", "http")
    return ("https" if ep.get("tls") else "http") if protocol == "http" else protocol


def _move_hint(name: str) -> str:
    """How to move entrypoint ``name`` somewhere else, for a bind error (``web`` also has a flag)."""
    return f"set entrypoints.{name}.address" + (" or pass --listen ADDR" if name == "web" else "")


def bind(host: str, port: int, protocol: str) -> socket.socket:
    """One reuseport socket for ``host:port`` (TCP for http/tcp entrypoints, UDP for udp)."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    if host == "localhost":
        host = "127.0.0.1"
    sock = socket.socket(_family(host), kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise GatewayError(f"cannot bind {host}:{port} ({protocol}): {e.strerror or e}") from e
    sock.set_inheritable(True)
    return sock


class Listeners:
    """Every listening socket of the gateway, grouped in *listener sets*: one bound address, one socket per
    worker slot, named by a listener id (``lid``) that never changes while the set lives.

    ``specs[entrypoint]`` is the entrypoint's config plus the ``lid`` of the set it listens on. A reload
    ``stage``s the new entrypoints: a set whose address (host, port, transport) is unchanged is kept — its
    sockets, and the connections queued in them, are never touched — and new addresses are bound before
    anything else changes. ``commit`` then closes the sets no entrypoint uses any more; ``abort`` closes the
    ones a failed reload bound.
    """

    def __init__(self) -> None:
        self.sets: dict[int, list[socket.socket]] = {}
        self.addresses: dict[int, tuple[str, int, str]] = {}
        self.specs: dict[str, dict] = {}
        self._next_lid = 1

    @staticmethod
    def _address(ep: dict) -> tuple[str, int, str]:
        return (ep["host"], ep["port"], "udp" if ep.get("protocol", "http") == "udp" else "tcp")

    def open(self, entrypoints: dict[str, dict], slots: int) -> None:
        try:
            self.specs, _ = self.stage(entrypoints, slots)
        except GatewayError:
            self.close()
            raise

    def stage(self, entrypoints: dict[str, dict], slots: int) -> tuple[dict[str, dict], list[int]]:
        """Specs for ``entrypoints``, binding the addresses no current set has; returns (specs, new lids)."""
        by_address = {addr: lid for lid, addr in self.addresses.items()}
        specs: dict[str, dict] = {}
        fresh: list[int] = []
        try:
            for name, ep in entrypoints.items():
                spec = specs[name] = {**ep, "lid": self._set_for(name, self._address(ep), slots, by_address, fresh)}
                if ep.get("http3"):            # QUIC on the same port, UDP (worker/http3.py)
                    spec["h3_lid"] = self._set_for(name, (ep["host"], ep["port"], "udp"), slots, by_address, fresh)
        except GatewayError:
            self.abort(fresh)
            raise
        return specs, fresh

    def _set_for(self, name: str, addr: tuple[str, int, str], slots: int, by_address: dict[tuple, int],
                 fresh: list[int]) -> int:
        """The lid of the set bound to ``addr``: an existing one, or one bound now (added to ``fresh``)."""
        lid = by_address.get(addr)
        if lid is not None:
            return lid
        host, port, transport = addr
        socks = []
        try:
            for _ in range(slots):
                socks.append(bind(host, port, "udp" if transport == "udp" else "tcp"))
        except GatewayError as e:
            for s in socks:
                s.close()
            raise GatewayError(f"entrypoint '{name}': {e} ({_move_hint(name)})") from e
        lid = self._next_lid
        self._next_lid += 1
        self.sets[lid], self.addresses[lid] = socks, addr
        by_address[addr] = lid
        fresh.append(lid)
        return lid

    def commit(self, specs: dict[str, dict]) -> list[int]:
        """Make ``specs`` current and close every set no entrypoint listens on any more; returns those lids."""
        self.specs = specs
        used = {lid for spec in specs.values() for lid in spec_lids(spec)}
        closed = [lid for lid in self.sets if lid not in used]
        self.abort(closed)
        return closed

    def abort(self, lids: list[int]) -> None:
        for lid in lids:
            for s in self.sets.pop(lid, []):
                s.close()
            self.addresses.pop(lid, None)

    def fd(self, lid: int, slot: int) -> int:
        return self.sets[lid][slot].fileno()

    def fds_for(self, slot: int, specs: dict[str, dict] | None = None) -> dict[int, int]:
        """``{lid: fd}`` of one worker slot for the current (or the given) specs."""
        specs = self.specs if specs is None else specs
        return {lid: self.fd(lid, slot) for spec in specs.values() for lid in spec_lids(spec)}

    def urls(self) -> dict[str, str]:
        """``{entrypoint: scheme://host:port}`` as bound, for the start-up and reload logs."""
        return {name: url(_scheme(spec), self.sets[spec["lid"]][0].getsockname()) for name, spec in self.specs.items()}

    def worker_specs(self, specs: dict[str, dict] | None = None) -> list[dict]:
        specs = self.specs if specs is None else specs
        return [{"name": n, **spec} for n, spec in specs.items()]

    def close(self) -> None:
        self.abort(list(self.sets))
        self.specs = {}


def target_ids(user: str | None, group: str | None) -> tuple[int, int] | None:
    """(uid, gid) that ``--user``/``--group`` ask for, or None when neither is given. Unknown names are errors."""
    if not user and not group:
        return None
    try:
        pw = pwd.getpwnam(user) if user else None
        gid = grp.getgrnam(group).gr_gid if group else (pw.pw_gid if pw else os.getgid())
    except KeyError as e:
        raise GatewayError(f"unknown user or group: {e.args[0]}") from None
    return (pw.pw_uid if pw else os.getuid()), gid


def drop_privileges(user: str | None, group: str | None) -> None:
    """Switch to ``user``/``group`` after binding (no-op when neither is given)."""
    ids = target_ids(user, group)
    if ids is None:
        return
    uid, gid = ids
    os.setgid(gid)
    if user:
        os.initgroups(user, gid)
        os.setuid(uid)
