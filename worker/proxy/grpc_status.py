"""gRPC over the gateway: how failures the gateway itself decides reach a gRPC client.

gRPC calls are ordinary HTTP/2 streams (``content-type: application/grpc*``) and are proxied by
``http2.H2Server`` to HTTP/2 backends (``h2c://``, or ``https://`` with ALPN h2) with their trailers intact —
nothing here touches a call that reached its backend. But a gRPC client cannot read a JSON error body: when the
gateway answers on its own (no route, no healthy backend, connect failure, timeout, a middleware refusing the
request) the answer is a *trailers-only* response — HTTP 200 with ``grpc-status`` and ``grpc-message`` in the
one HEADERS frame — with the status chosen from the HTTP status the gateway would have sent, following the
gRPC spec's HTTP-to-gRPC mapping plus the gateway cases:

    404 no route → 12 UNIMPLEMENTED       502/503 no backend, connect error → 14 UNAVAILABLE
    504 timeout → 4 DEADLINE_EXCEEDED     401 → 16 UNAUTHENTICATED   403 → 7 PERMISSION_DENIED
    429 → 8 RESOURCE_EXHAUSTED            400 → 13 INTERNAL           anything else → 2 UNKNOWN
"""

from __future__ import annotations

from urllib.parse import quote

OK, UNKNOWN, DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 0, 2, 4, 7, 8
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16

_FROM_HTTP: dict[int, tuple[int, str]] = {
    400: (INTERNAL, "bad request"),
    401: (UNAUTHENTICATED, "unauthenticated"),
    403: (PERMISSION_DENIED, "permission denied"),
    404: (UNIMPLEMENTED, "no route matched"),
    429: (RESOURCE_EXHAUSTED, "rate limited"),
    502: (UNAVAILABLE, "backend unavailable"),
    503: (UNAVAILABLE, "no healthy backends"),
    504: (DEADLINE_EXCEEDED, "backend timed out"),
}


def from_http_status(status: int) -> tuple[int, str]:
    """The gRPC status code and message for a response the gateway would answer with ``status``."""
    return _FROM_HTTP.get(status, (UNKNOWN, f"gateway answered HTTP {status}"))


def trailers_only(code: int, message: str) -> list[tuple[bytes, bytes]]:
    """The fields of a trailers-only gRPC response, sent as a single HEADERS block with ``:status`` 200
    (``grpc-message`` is percent-encoded)."""
    return [(b"content-type", b"application/grpc"),
            (b"grpc-status", str(code).encode()), (b"grpc-message", quote(message, safe=" ").encode())]
