"""One request/response pair (``Exchange``) and the protocol-independent steps every wire protocol shares."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .chain import BodyFilter
    from .http1 import ClientProtocol
    from .middlewares.retry import Retry
    from .runtime import Backend, Route, Runtime, Service
    from .upstream import UpstreamProtocol


class Exchange:
    """One request/response pair on a client connection.

    Deliberately without ``__slots__``: most fields keep their class-level default for most requests (they
    belong to middlewares, retries, upgrades, tracing), so a new exchange only stores what differs — creating
    one is a small dict, not thirty-odd slot stores. The protocol sets the request fields in
    ``on_headers_complete``.
    """

    # request (set by ClientProtocol.on_headers_complete)
    method = target = host = xff = b""
    xff_in: bytes | None = None              # the client's own X-Forwarded-For (ip-allow's trusted_proxies read it)
    headers: list[tuple[bytes, bytes]] = ()  # type: ignore[assignment]  # replaced per request, never mutated
    keep_alive = http11 = is_head = req_chunked = req_has_body = False
    conn: ClientProtocol | None = None
    runtime: Runtime | None = None
    # progress
    req_done = False
    pending: list[bytes] | None = None       # request body parsed before an upstream was bound
    pending_bytes = 0
    req_bytes = 0
    upstream: UpstreamProtocol | None = None
    resp_started = False
    retried = False
    status = 0
    resp_bytes = 0
    counted = False
    # routing result
    route: Route | None = None
    service: Service | None = None
    backend: Backend | None = None
    local: bytes | None = None               # a complete response the gateway answers with instead of proxying
    middleware: str | None = None            # the name of the middleware whose reply ``local`` is (chain.py)
    set_cookie: bytes | None = None          # a sticky-session cookie (Set-Cookie value) for the response
    upgrade = False                          # a WebSocket upgrade: proxied by proxy/websocket.py
    # set by middlewares (see chain.py): the exchange waits for an async request phase; a response body
    # transformation; a streamed request body limit; retry state and the replayable request body so far;
    # a middleware reading the whole body first (middlewares/body_buffer.py)
    suspended = False
    filter: BodyFilter | None = None
    req_limit = 0
    retry: Retry | None = None
    attempts = 0
    replay: bytearray | None = None
    sink = None
    on_done: list | None = None              # callables(ex) run once when the exchange is accounted (finished)
    usage_tap = None                         # token-meter's response tap (middlewares/token_meter.py)
    # observability (worker/observability): start, upstream bind, trace span, a gRPC call's grpc-status
    t_up = 0.0
    span = None
    grpc_status: int | None = None           # set on HTTP/2 gRPC streams (http2.Stream.note_grpc_status)

    def __init__(self) -> None:
        self.t0 = perf_counter()


def passive_failure(ex: Exchange, now: float) -> None:
    """Count a failed attempt against its backend's passive health (HTTP/1.1 connections and HTTP/2 streams)."""
    service, backend = ex.service, ex.backend
    if service.passive_failures and backend is not None:
        backend.plane.passive_failure(backend.idx, now, service.passive_failures, service.passive_cooldown)


def repick(service: Service, failed: Backend | None) -> Backend | None:
    """A retry's backend: another one than ``failed`` when the balancer offers one within a round."""
    balancer = service.balancer
    backend = balancer.pick()
    for _ in range(len(service.backends)):
        if backend is not failed:
            break
        backend = balancer.pick()
    return backend
