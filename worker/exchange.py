"""One request/response pair (``Exchange``), what a wire protocol offers the rest of the request path
(``Downstream``), and the protocol-independent steps every protocol runs: route, start (internal services, backend
pick), response head, failure, retry, accounting.

HTTP/1.1 (``http1.ClientProtocol``) and HTTP/2 (``http2.Stream``) only translate bytes to and from an exchange; the
upstream sides (``upstream.http1``, ``upstream.http2``) hand each client side a response as *status and fields*,
never as serialized bytes. So routing, the middleware chain, backend picking, internal services and the response
phase exist once and a protocol cannot behave differently by accident.

States of an exchange, in order (who moves it on, and what holds in each):

    state        entered when (by)                                  invariant
    -----------  -------------------------------------------------  -------------------------------------------
    ROUTED       the head parsed and ``route`` ran (protocol)        ``route``/``service`` set, or ``local`` (404,
                                                                     a refused request) is the answer
    SUSPENDED    an async request phase runs (``suspended=True``)   nothing is sent; body bytes wait in ``pending``
    LOCAL        ``local`` set (chain reply, internal service,       no backend is picked; the answer goes out
                 refused request)                                    once the exchange is first on its connection
    PICKED       ``start`` chose ``backend`` and acquired it         exactly one ``backend.release()`` follows
                                                                     (``release_backend``), whatever happens
    BOUND        an upstream took it (``upstream`` or ``h2up`` set)  request bytes flow; ``pending`` is empty
    RESPONDING   ``response_head`` passed (``resp_started=True``)    no error status can be sent any more: a
                                                                     failure is a reset (``Downstream.abort``)
    DONE         ``account`` ran (``counted=True``)                  counted, logged and traced exactly once;
                                                                     status 0 when the client left first

Side flags: ``req_done`` (the request body was read completely; set by the protocol only), ``retried`` (a reused
keep-alive connection failed before any byte: resent once), ``attempts``/``replay`` (the retry middleware's),
``upgrade`` (a WebSocket upgrade: ``proxy/websocket.py`` takes over from BOUND), ``translation`` (a provider
in another wire format: its head and body are translated before the chain's response phase sees them).

A retry (``Downstream.fail`` or a retried status in ``response_head``) goes from BOUND back to PICKED through
``retry_later``: the backend is released, and after the middleware's delay ``_redispatch`` picks another.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..shared import log as gwlog
from ..shared.errors import ConnectError, UpstreamError, UpstreamTimeout
from . import responses
from .chain import Reply
from .middlewares._support import ai_body
from .responses import Answer
from .router import RequestView, RouterTable
from .services.outliers import NO_ANSWER

if TYPE_CHECKING:
    from .chain import BodyFilter
    from .middlewares.retry import Retry
    from .process import Worker
    from .runtime import Backend, Route, Runtime, Service
    from .upstream.http1 import UpstreamProtocol
    from .upstream.http2 import UpstreamStream

log = gwlog.get("worker")

# Per-request debug lines (the router chosen or why none, a middleware's answer, the backend picked and why,
# upstream errors and retries): set by the worker once logging is set up (``--log-level debug``), so that when off
# they cost one global test per step.
DEBUG = False

Fields = list[tuple[bytes, bytes]]
NO_BODY_STATUS = frozenset((204, 304))
RETRY_PICKS = 8                              # picks through a service of services to find another backend


class Downstream(Protocol):
    """The client side of an exchange, as the upstream sides and the steps below use it. ``http1.ClientProtocol``
    (one per connection) and ``http2.Stream`` (one per stream) implement it."""

    worker: Worker
    entrypoint: str
    client_ip: str
    peer: bytes                              # the client's address as bytes (X-Real-IP, X-Forwarded-For)
    scheme: bytes
    port: int
    protocol: bytes                          # what the access log says for a client that is not HTTP/1.1
    fwd_const: bytes                         # X-Real-IP / X-Forwarded-Proto / X-Forwarded-Port, serialized once
    alt_svc: bytes | None                    # the Alt-Svc value of an entrypoint with an HTTP/3 side (TCP side only)

    @property
    def peername(self) -> tuple[str, int] | None: ...

    @property
    def sockname(self) -> tuple[str, int] | None:
        """The gateway's address the client reached (a PROXY protocol header's destination)."""

    def current(self, ex: Exchange) -> bool:
        """Whether ``ex`` is still the exchange this side serves (not reset, not gone, first in line)."""

    def connect_upstream(self, ex: Exchange) -> None:
        """Send ``ex`` (its backend picked and acquired) to that backend."""

    def bind(self, ex: Exchange, up: UpstreamProtocol) -> None:
        """An HTTP/1.1 upstream connection (``upstream.http1.proxy``) takes ``ex``: hand it the request body read
        so far, framed for HTTP/1.1."""

    def bind_h2(self, ex: Exchange, us: UpstreamStream) -> None:
        """A stream on an HTTP/2 backend connection (``upstream.http2``) takes ``ex``: from now on request body
        bytes go to it raw, and the client's push-back pauses it."""

    def body_to_send(self, ex: Exchange) -> list[bytes] | None:
        """The request body read before an upstream was bound, raw (unframed), or on a retry the whole body so
        far; ``body_sent`` follows once it went out."""

    def body_sent(self, ex: Exchange) -> None:
        """What ``body_to_send`` gave went to the upstream: stop holding it (and the client) back."""

    def send_interim(self, status: int, reason: bytes, fields: Fields) -> None:
        """A 1xx response other than 101 (100 Continue, 103 Early Hints), before the final head."""

    def send_head(self, ex: Exchange, status: int, reason: bytes, fields: Fields, length_known: bool,
                  end: bool = False) -> None:
        """The final response head, after the response phase. ``length_known``: ``fields`` carry the body's
        Content-Length; ``end``: no body or trailers follow (an HTTP/2 trailers-only response)."""

    def send_body(self, ex: Exchange, data: bytes) -> None:
        """Response body bytes (already through ``ex.filter``); they may be buffered until ``flush``."""

    def flush(self) -> None:
        """Write what ``send_*`` buffered (the upstream side calls it once per read)."""

    def finish(self, ex: Exchange, trailers: Fields | None = None) -> None:
        """The response is complete: account it, release the backend, end it (with trailers where the protocol
        has them) and go on with the connection."""

    def answer(self, ex: Exchange, answer: Answer) -> None:
        """Answer with a response the gateway built itself."""

    def fail(self, ex: Exchange, error: UpstreamError) -> None:
        """The backend produced no response head: passive health, then a retry or an error answer."""

    def abort(self, ex: Exchange) -> None:
        """The response broke after it started: the client can only learn it from a reset."""

    def retry_later(self, ex: Exchange) -> None:
        """Send ``ex`` again after the retry middleware's delay."""

    def want_body(self, ex: Exchange) -> None:
        """A middleware reads the request body now (``ex.sink``): take it from the client, whatever paused it."""

    def hold_body(self) -> None:
        """The upstream pushes back: stop taking request body bytes from the client."""

    def release_body(self) -> None:
        """The upstream drained: take request body bytes again."""


class Exchange:
    """One request/response pair; its states are in the module docstring.

    Deliberately without ``__slots__``: in pure Python most fields keep their class-level default for most
    requests (they belong to middlewares, retries, upgrades, tracing), so a new exchange only stores what differs
    — creating one is a small dict, not thirty-odd slot stores. Compiled, it is a native class (exchange.pxd):
    the fields are a zeroed struct, and the protocols read them without a lookup. The protocol sets the request
    fields.
    """

    # The fields that start as None, False or 0 (``_ZERO``); the others start in ``__init__``.
    # request (set by the protocol before ``route``)
    xff_in: bytes | None              # the client's own X-Forwarded-For (ip-allow's trusted_proxies)
    keep_alive: bool                 # the client connection may carry another request after this one
    http11: bool                     # the client speaks HTTP/1.1 (False: HTTP/1.0, or HTTP/2 streams)
    is_head: bool
    expect_continue: bool            # an HTTP/1.1 client waits for 100 Continue before sending its body
    req_chunked: bool                # the request body goes to an HTTP/1.1 backend chunk-framed
    req_has_body: bool
    conn: Downstream | None
    runtime: Runtime | None
    # progress
    req_done: bool
    pending: list[bytes] | None       # request body read before an upstream was bound
    pending_bytes: int
    req_bytes: int
    upstream: UpstreamProtocol | None  # the bound HTTP/1.1 upstream connection (HTTP/1.1 backends)
    h2up: UpstreamStream | None       # the bound stream on an HTTP/2 backend (``upstream.http2``)
    resp_started: bool
    resp_chunked: bool               # the HTTP/1.1 client gets the response body chunk-framed
    retried: bool
    status: int
    resp_bytes: int
    counted: bool
    # routing result
    route: Route | None
    service: Service | None
    backend: Backend | None
    local: Answer | None              # the gateway's own answer instead of a proxied response
    middleware: str | None            # the name of the middleware whose reply ``local`` is (chain.py)
    set_cookie: bytes | tuple[bytes, ...] | None  # sticky-session cookies (Set-Cookie values) to send
    resp_fields: Fields | None        # fields the response gets (the activator's X-A3S-Cold-Start)
    upgrade: bool                    # a WebSocket upgrade: proxied by proxy/websocket.py
    # set by middlewares (see chain.py): the exchange waits for an async request phase; a response body
    # transformation; a streamed request body limit; retry state and the replayable request body so far;
    # a middleware reading the whole body first (middlewares/_support/body_buffer.py)
    suspended: bool
    filter: BodyFilter | None
    req_limit: int
    retry: Retry | None
    attempts: int
    replay: bytearray | None
    sink: Any
    on_done: list | None              # callables(ex) run once when the exchange is accounted (finished)
    usage_tap: Any                    # token-meter's response tap and charge (token_meter.py)
    meter: Any
    ai_body: Any                      # the parsed JSON body or its error (_support/ai_body.py)
    ai_cache: Any                     # semantic-cache's lookup of this request (semantic_cache.py)
    translation: Any                  # a provider's wire format (middlewares/_support/anthropic.py)
    ai_attempts: list | None          # ai-fallback's [target, model, outcome] per attempt (access log)
    ai_tokens: int                       # ai-fallback's estimate of the prompt's tokens
    ai_next: Any
    # observability (worker/observability): start, upstream bind, trace span, a gRPC call's grpc-status
    t_up: float
    span: Any
    grpc_status: int | None           # set on HTTP/2 gRPC streams (http2.Stream.note_grpc_status)

    def __init__(self) -> None:
        self.t0 = perf_counter()
        # the fields that start otherwise (set per exchange on either build)
        self.method: bytes = b""
        self.target: bytes = b""  # origin form: path and query
        self.host: bytes = b""  # Host / :authority as received
        self.xff: bytes = b""  # the X-Forwarded-For the backend gets
        self.headers: Fields = ()  # type: ignore[assignment]  # what is forwarded: identity, framing fields removed
        self.raw: Fields = ()  # type: ignore[assignment]      # the header fields as received (what rules saw)
        self.budget_service: int = -1  # the service whose retry budget this exchange holds a slot of
        self.ai_target: int = -1  # ai-fallback's current target, its next one, the client's path
        self.ai_path: bytes = b""


# Pure Python: the zero-start fields as class attributes, so a new exchange only stores what differs. Compiled, they
# are the native class's fields (exchange.pxd), zeroed at creation; a class attribute would shadow them.
_ZERO = {"bool": False, "int": 0, "float": 0.0}
if __file__.endswith(".py"):
    for _field, _annotation in Exchange.__annotations__.items():
        setattr(Exchange, _field, _ZERO.get(_annotation))


# -- request side
def route(ex: Exchange, conn: Downstream, raw: Fields) -> Answer | Awaitable[Answer | None] | None:
    """Match the entrypoint's routers and run the chain's request phase: None to go on (``start``), an answer, or
    an awaitable of either. The rules see ``raw``, the client's header fields as received (identity headers
    included), on every protocol. When a candidate router uses ``Model()`` and the request has a body, the body
    is read and parsed first (``ai_body.inspect``, bounded by ``[limits] model_inspect_bytes``): the awaitable."""
    worker = conn.worker
    runtime = ex.runtime = worker.runtime
    ex.raw = raw
    table = runtime.tables.get(conn.entrypoint)
    if table is None:
        return _routed(ex, conn, None)
    target, host, method = ex.target, ex.host, ex.method
    path, _, query = target.partition(b"?")
    host = host[: host.find(b"]") + 1] if host[:1] == b"[" else host.partition(b":")[0]
    view = RequestView(host.decode("latin-1").lower(), path.decode("latin-1"), method.decode("latin-1"), raw,
                       query, conn.client_ip)
    if (ex.req_has_body or ex.pending) and table.needs_body(view.host):
        return _route_on_body(ex, conn, table, view)
    return _routed(ex, conn, table.match(view))


async def _route_on_body(ex: Exchange, conn: Downstream, table: RouterTable, view: RequestView) -> Answer | None:
    got = await ai_body.inspect(ex)
    if got.__class__ is Reply:
        return responses.answer(got.status, got.body, b"application/json")  # type: ignore[union-attr]
    view.model = got.model  # type: ignore[union-attr]
    result = _routed(ex, conn, table.match(view))
    if result is None or result.__class__ is Answer:
        return result  # type: ignore[return-value]
    return await result  # type: ignore[misc]


def _routed(ex: Exchange, conn: Downstream, matched: Route | None) -> Answer | Awaitable[Answer | None] | None:
    """The chain's request phase of the router that matched, or 404."""
    tracer = conn.worker.obs.tracer
    if tracer is not None:                   # after matching: rules see the client's own tracing headers
        tracer.start(ex)
    if matched is None:
        if DEBUG:
            log.debug("%s: no router of entrypoint %r matched", _said(ex), conn.entrypoint)
        return responses.error_answer(404)
    ex.route = matched
    ex.service = matched.service
    if matched.chain.middlewares:
        result = matched.chain.on_request(ex)
        if DEBUG:
            log.debug("%s: router %r, middlewares %s: %s", _said(ex), matched.name,
                      [m.name for m in matched.chain.middlewares],
                      "go on" if result is None else f"answered {result.status} by {ex.middleware!r}"
                      if result.__class__ is Answer else "waiting for an asynchronous middleware")
        return result
    if DEBUG:
        log.debug("%s: router %r", _said(ex), matched.name)
    return None


def _said(ex: Exchange) -> str:
    """How a debug line names the request."""
    return f"{ex.method.decode('latin-1')} {ex.host.decode('latin-1')}{ex.target.decode('latin-1')}"


def start(ex: Exchange, conn: Downstream) -> None:
    """Serve a routed exchange whose request phase passed: an internal service answers it, or a backend is picked
    (sticky session, conversation affinity, the balancer) and ``conn`` connects to it; 503 without one. A service
    of services may arm a failover's replay or a mirroring tee (``services/mirroring.py``) right after its pick."""
    service = ex.service
    if service.internal is not None:
        if service.internal == "websocket-mux":          # the gateway multiplexes it (proxy/websocket_mux.py)
            return service.accept(ex, conn)  # type: ignore[attr-defined]
        return conn.answer(ex, internal_answer(ex, conn))
    if service.kind is not None:             # a service of services: the exchange runs on the leaf it picks
        picked = service.kind.pick(ex.headers, conn.worker.now)
        if picked is None:
            last_resort = ex.runtime.last_resort     # a panic threshold somewhere below (services/panic.py)
            if last_resort is not None:
                picked = last_resort.pick(service.kind.pick, ex.headers, conn.worker.now)
            if picked is None:
                return conn.answer(ex, error_for(ex, 503))
        ex.service, backend, cookies = picked
        activator = ex.service.activator
        if activator is not None:            # a served revision: an instance with room, or its queue
            return activator.admit(ex, conn, backend)
        if cookies:
            ex.set_cookie = cookies
        kind = service.kind
        if kind.replay is not None:          # a failover with ``errors``: the primary's answer may be replaced
            kind.replay.arm(ex, kind)
        elif kind.tee is not None:           # mirroring: copies of the request go to the mirrors
            kind.tee(ex, conn)
    elif service.sticky is None:
        backend = service.balancer.pick()
    else:
        backend, ex.set_cookie = service.sticky.pick(ex.headers, conn.worker.now)
    if DEBUG:
        _debug_pick(ex, backend, "sticky session or affinity" if service.sticky is not None else "balancer")
    if backend is None:
        return conn.answer(ex, error_for(ex, 503))
    ex.backend = backend
    backend.acquire()
    conn.connect_upstream(ex)


def _debug_pick(ex: Exchange, backend: Backend | None, why: str) -> None:
    log.debug("%s: service %r, %s", _said(ex), ex.service.name,
              f"backend {backend.shown_url} ({why})" if backend is not None else "no healthy backend: 503")


def dispatch(ex: Exchange, conn: Downstream, backend: Backend | None) -> None:
    """Send a retried ``ex`` to ``backend``, or answer 503 when the service has none (``start`` does the same
    for a first try, inline: it is on every request's path)."""
    if backend is None:
        return conn.answer(ex, error_for(ex, 503))
    ex.backend = backend
    backend.acquire()
    conn.connect_upstream(ex)


def internal_answer(ex: Exchange, conn: Downstream) -> Answer:
    """The answer of an ``@internal`` service, after the chain's response phase: ``acme-http01@internal`` (a
    pending challenge's key authorization, tokens from the master), ``unresolved@internal`` (500: the Gateway API
    says a rule whose backend references cannot be resolved answers 500), ``unavailable@internal`` (503: a
    Kubernetes Service with no ready endpoint) or ``whoami@internal`` (the request as the gateway saw it)."""
    if ex.service.internal == "unresolved":
        return error_for(ex, 500)
    if ex.service.internal == "unavailable":
        return error_for(ex, 503, "the service has no ready endpoints")
    if ex.service.internal == "acme":
        token = ex.target.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode("latin-1")
        key_authorization = conn.worker.acme_tokens.get(token)
        if key_authorization is None:
            return error_for(ex, 404)
        reply = Reply(200, key_authorization.encode(), [(b"Content-Type", b"text/plain")])
    else:
        reply = Reply(200, whoami(ex, conn), [(b"Content-Type", b"application/json")])
    return ex.route.chain.answer(ex, reply)     # the response phase too (CORS on whoami@internal)


def whoami(ex: Exchange, conn: Downstream) -> bytes:
    headers: dict[str, list[str]] = {}
    for name, value in ex.raw:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    peer = conn.peername or ("", 0)
    body: dict[str, Any] = {
        "hostname": os.uname().nodename,
        "method": ex.method.decode(),
        "path": ex.target.decode("latin-1"),
        "proto": "HTTP/1.1" if ex.http11 else conn.protocol.decode(),
        "host": ex.host.decode("latin-1"),
        "headers": headers,
        "client": {"ip": peer[0], "port": peer[1]},
        "entrypoint": conn.entrypoint,
        "router": ex.route.name if ex.route else None,
        "worker": {"slot": conn.worker.slot, "pid": os.getpid()},
        "generation": ex.runtime.generation,
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"


def error_for(ex: Exchange, status: int, message: str | None = None) -> Answer:
    """An error the gateway answers with; once routed, through the chain's response phase (CORS on a 502)."""
    route = ex.route
    if route is not None and route.chain.responders:
        return route.chain.error(ex, status, message)
    return responses.error_answer(status, message)


def middleware_failed(ex: Exchange) -> Answer:
    """500 for an asynchronous request phase that raised: logged, never fatal to the connection."""
    log.exception("middleware failed on %s %s", ex.method, ex.target)
    return responses.error_answer(500)


# -- upstream side
def connect_error(exc: BaseException) -> UpstreamError:
    """The error a failed connection attempt to a backend becomes (every upstream side maps them here)."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("Gateway timeout: connecting to the backend timed out")
    return ConnectError(f"Bad gateway: cannot connect to backend: {getattr(exc, 'strerror', None) or exc}")


def response_head(ex: Exchange, conn: Downstream, status: int, fields: Fields) -> bool:
    """A final response head arrived (``fields`` without hop-by-hop fields, edited in place): False when the retry
    middleware retries this status (the caller drops the response unread and calls ``conn.retry_later``), else
    True after passive health and the chain's response phase ran and the sticky cookie was added."""
    retry = ex.retry
    if retry is not None and status in retry.statuses and retry.retry_status(ex, status, fields):
        return False
    ex.resp_started = True
    ex.status = status
    outliers = ex.service.outliers
    if outliers is not None:
        if status in outliers.failing:
            outliers.failure(ex.backend, status, conn.worker.now)  # type: ignore[arg-type]
        else:
            ex.backend.passive_success()  # type: ignore[union-attr]
    route = ex.route
    translation = ex.translation
    if translation is None:
        if route is not None and route.chain.responders:
            route.chain.on_response(ex, status, fields)
            if ex.filter is not None:        # a transformed body's length is not known
                fields[:] = [f for f in fields if f[0].lower() != b"content-length"]
    else:                                    # another wire format: the chain sees the client's format
        translation.head(status, fields)
        if route is not None and route.chain.responders:
            route.chain.on_response(ex, status, fields)
        ex.filter = translation.wrap(ex.filter)
        fields[:] = [f for f in fields if f[0].lower() != b"content-length"]
    if ex.resp_fields is not None:
        fields += ex.resp_fields
    cookie = ex.set_cookie
    if cookie is not None:
        if cookie.__class__ is tuple:        # picked through a service of services (one cookie per level)
            fields += [(b"Set-Cookie", c) for c in cookie]
        else:
            fields.append((b"Set-Cookie", cookie))  # type: ignore[arg-type]
    alt_svc = conn.alt_svc
    if alt_svc is not None:
        fields.append((b"Alt-Svc", alt_svc))
    return True


def passive_failure(ex: Exchange, now: float) -> None:
    """Count an attempt that got no answer against its backend (passive health / outlier detection)."""
    outliers, backend = ex.service.outliers, ex.backend
    if outliers is not None and backend is not None:
        outliers.failure(backend, NO_ANSWER, now)


def failed(ex: Exchange, conn: Downstream, error: UpstreamError, reached: bool) -> bool:
    """An attempt failed before a response head (``Downstream.fail``): counted for passive health; whether it is
    sent again (``reached``: the request, or part of it, went out)."""
    passive_failure(ex, conn.worker.now)
    again = ex.retry is not None and ex.retry.retry_error(ex, error, reached)
    if DEBUG:
        backend = ex.backend
        log.debug("%s: %s from %s: %s", _said(ex), error.message, backend.shown_url if backend else "a backend",
                  f"retry {ex.attempts}" if again else f"answered {error.status}")
    return again


def retry_later(ex: Exchange, conn: Downstream) -> None:
    """Send the exchange again after the retry middleware's delay, to another backend when there is one."""
    failed = ex.backend
    release_backend(ex)
    conn.worker.loop.call_later(ex.retry.delay(ex), _redispatch, ex, conn, failed)  # type: ignore[union-attr]


def _redispatch(ex: Exchange, conn: Downstream, failed: Backend | None) -> None:
    if conn.current(ex):
        backend = repick(ex, failed)
        if DEBUG:
            _debug_pick(ex, backend, f"retry {ex.attempts}")
        dispatch(ex, conn, backend)
        conn.flush()


def repick(ex: Exchange, failed: Backend | None) -> Backend | None:
    """A retry's backend: another one than ``failed`` when the balancer offers one within a round. Through a
    service of services the pick starts again at the router's service (so another child may serve), without
    sticky sessions."""
    retry = ex.retry
    if retry is not None and retry.chooses:  # ai-fallback: its next target
        return retry.next_backend(ex, failed)  # type: ignore[attr-defined]
    top = ex.route.service if ex.route is not None else ex.service
    if top.kind is not None:
        return _repick_through(ex, top, failed)
    service = ex.service
    balancer = service.balancer
    backend = balancer.pick()
    for _ in range(len(service.backends)):
        if backend is not failed:
            break
        backend = balancer.pick()
    return backend


def _repick_through(ex: Exchange, top: Service, failed: Backend | None) -> Backend | None:
    kind: Any = top.kind
    pick = kind.fallback if kind.replay is not None and ex.retry is kind.replay else kind.pick
    picked = None
    for _ in range(RETRY_PICKS):
        picked = pick(None, 0.0)
        if picked is None or picked[1] is not failed:
            break
    if picked is None and ex.runtime.last_resort is not None:
        picked = ex.runtime.last_resort.pick(pick, None, 0.0)
    if picked is None:
        return None
    ex.service = picked[0]
    return picked[1]


# -- the end
def account(ex: Exchange, conn: Downstream) -> None:
    """Count a finished exchange on the plane, exactly once (status 0: the client left before a response)."""
    if ex.counted:
        return
    ex.counted = True
    if ex.on_done is not None:
        for done in ex.on_done:
            try:
                done(ex)
            except Exception:  # noqa: BLE001 — a middleware bug must not break accounting
                log.exception("on_done hook failed")
    conn.worker.obs.recorder.finish(ex, conn)  # the plane's counters and observations, access log, spans


def release_backend(ex: Exchange) -> None:
    backend = ex.backend
    if backend is not None:
        ex.backend = None
        backend.release()
