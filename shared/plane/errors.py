"""The plane's one exception type.

``PlaneError`` is raised for everything the shared-memory state plane refuses: /dev/shm too small at create,
a segment missing or of the wrong size at attach, a layout that does not fit, a slot table that is full, or a
write attempted through a read-only attachment.
"""

from __future__ import annotations

from a3s_gateway.shared.errors import GatewayError


class PlaneError(GatewayError):
    """The shared-memory state plane could not do what was asked; the message says what and why."""
