"""The Docker Engine API client both Docker users share (the provider reads containers, the serving executor
runs them): one aiohttp session to the daemon, over its unix socket or ``tcp://`` with TLS client certificates
as ``dockerd --tlsverify`` wants.

Invariant: every path is prefixed with the API version the gateway was written against (``API``), so a newer
daemon answers in that version's shapes.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

API = "v1.41"
# The container events (``Action``, before any ``:``) after which what a container serves may have changed; the
# health checks' ``exec_*`` events are not among them.
CONTAINER_EVENTS = frozenset({"start", "die", "stop", "destroy", "health_status", "pause", "unpause", "rename"})


def session(endpoint: str, tls: dict[str, Any] | None = None) -> aiohttp.ClientSession:
    """A session whose relative URLs go to the daemon at ``endpoint`` (``unix:///path`` or ``tcp://host:port``)."""
    if endpoint.startswith("unix://"):
        return aiohttp.ClientSession(base_url="http://docker",
                                     connector=aiohttp.UnixConnector(path=endpoint[len("unix://"):]))
    context = None
    if tls is not None:
        context = ssl.create_default_context(cafile=tls["ca_file"])
        if tls["cert_file"]:
            context.load_cert_chain(tls["cert_file"], tls["key_file"])
    scheme = "https" if context else "http"
    return aiohttp.ClientSession(base_url=f"{scheme}://{endpoint[len('tcp://'):]}",
                                 connector=aiohttp.TCPConnector(ssl=context or False))
