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

from ..shared.errors import GatewayError

BACKLOG = 4096


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


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
    """Every listening socket of the gateway: ``sockets[entrypoint][slot]``."""

    def __init__(self) -> None:
        self.sockets: dict[str, list[socket.socket]] = {}
        self.specs: dict[str, dict] = {}

    def open(self, entrypoints: dict[str, dict], slots: int) -> None:
        try:
            for name, ep in entrypoints.items():
                self.sockets[name] = [bind(ep["host"], ep["port"], ep.get("protocol", "http")) for _ in range(slots)]
                self.specs[name] = ep
        except GatewayError:
            self.close()
            raise

    def fds_for(self, slot: int) -> dict[str, int]:
        return {name: socks[slot].fileno() for name, socks in self.sockets.items()}

    def close(self) -> None:
        for socks in self.sockets.values():
            for s in socks:
                s.close()
        self.sockets.clear()


def drop_privileges(user: str | None, group: str | None) -> None:
    """Switch to ``user``/``group`` after binding (no-op when neither is given)."""
    if group:
        os.setgid(grp.getgrnam(group).gr_gid)
    if user:
        pw = pwd.getpwnam(user)
        if not group:
            os.setgid(pw.pw_gid)
        os.initgroups(user, os.getgid())
        os.setuid(pw.pw_uid)
