"""systemd's readiness protocol (sd_notify), without libsystemd.

Under ``Type=notify`` systemd sets ``$NOTIFY_SOCKET`` to a unix datagram socket; the service reports its state by
sending newline-separated ``KEY=VALUE`` lines to it (``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=...``,
``MAINPID=...``). A path starting with ``@`` names a socket in the abstract namespace (the ``@`` stands for a
leading NUL byte).

Invariants: ``notify`` never raises — a gateway must not fail because its supervisor went away — and it is a
no-op returning False when ``$NOTIFY_SOCKET`` is unset (started by hand, in tests, or under another supervisor).
Only the master calls it: with the unit's default ``NotifyAccess=main``, systemd ignores messages from workers.

Since systemd 253, ``RELOADING=1`` must carry ``MONOTONIC_USEC=`` (the CLOCK_MONOTONIC time of the reload start)
for ``Type=notify-reload``; ``notify`` adds it to any message that contains ``RELOADING=1`` and lacks it, which
older systemd versions ignore harmlessly.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["enabled", "notify"]


def enabled() -> bool:
    """Whether a supervisor asked for notifications (``$NOTIFY_SOCKET`` is set)."""
    return bool(os.environ.get("NOTIFY_SOCKET"))


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"`` or ``"RELOADING=1\\nSTATUS=reloading"``) to ``$NOTIFY_SOCKET``.

    Returns True when the datagram was sent, False when the variable is unset or the send failed.
    """
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    lines = state.strip("\n").split("\n")
    if "RELOADING=1" in lines and not any(line.startswith("MONOTONIC_USEC=") for line in lines):
        lines.append(f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(path))
            sock.sendall(payload)
        return True
    except OSError:
        return False
