"""``mirroring``: the primary service serves every request; a copy of some requests goes to each mirror, and the
mirrors' answers are discarded.

Which requests a mirror gets is Traefik's deterministic counter, node-wide: mirror i is chosen when
``count_i * 100 < total * percent_i`` over the requests through this service on every worker (the plane's
``traffic`` table, under the service's lock), so 20 % of 1000 requests is exactly 200.

Invariants:

* The primary is never delayed by a mirror. ``start`` only counts and, for a chosen request with a body, keeps
  the body as it streams to the primary (``tee``); copies go out afterwards as their own tasks, on their own
  connections, with their own ``timeout``, and nothing waits for them.
* At most ``max_in_flight`` copies per worker are on the way at once (for all mirroring services of the
  worker); more are dropped and counted ``dropped``, so a slow mirror costs bounded memory, never latency.
* The body is kept up to ``max_body_bytes``; a larger one still reaches the primary whole (keeping never
  touches what is forwarded) and the request is not mirrored (``too_large``). A body-less request, or any with
  ``mirror_body = false``, is copied at once; one with a body once the client sent all of it, when the exchange
  ends. A copy that went out is never cancelled, even when the client goes away.
* A mirror is any service: a copy is picked through it as a retry picks (no sticky session), and counts in its
  backend's in-flight requests while on the way.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...shared import log as gwlog
from ..middlewares.retry import Retry
from .weighted import Fields, Node, Picked, pick_of

if TYPE_CHECKING:
    from ...shared.plane import Plane
    from ..exchange import Downstream, Exchange
    from ..runtime import Backend

log = gwlog.get("worker")

IN_FLIGHT = [0]
"""Copies this worker has on the way (a worker is one process; the count outlives reloads, as the copies do)."""
FRAMING = frozenset((b"content-length", b"transfer-encoding"))


class Mirroring:
    replay = None                            # only a failover replays a request elsewhere (failover.py)

    def __init__(self, idx: int, primary: Node, mirrors: list[tuple[Node, int]], params: dict[str, Any],
                 plane: Plane) -> None:
        self.pick = pick_of(primary)
        self.idx = idx
        self.mirrors = [pick_of(node) for node, _ in mirrors]
        self.percents = tuple(percent for _, percent in mirrors)
        self.mirror_body = params["mirror_body"]
        self.timeout = params["timeout"]
        self.max_in_flight = params["max_in_flight"]
        self.plane = plane
        self.keeper = Retry("mirroring", {"max_retries": 0, "retry_interval_ms": 0, "backoff": "constant",
                                          "retry_on_statuses": [], "replay_buffer_bytes": params["max_body_bytes"]},
                            None)

    def tee(self, ex: Exchange, conn: Downstream) -> None:
        """Count ``ex`` (its primary just picked) and send it to the mirrors chosen for it: now when it has no
        body to copy, else once the exchange ends with the whole body kept."""
        chosen = self.plane.mirror_select(self.idx, self.percents)
        if not chosen:
            return
        if not ex.req_has_body or not self.mirror_body:
            return self._fire(ex, conn, chosen, None)
        if ex.retry is None:                 # a retry middleware keeps the body already: its copy is used
            self.keeper.keep_from_now(ex)
        done = ex.on_done if ex.on_done is not None else []
        done.append(lambda ex: self._ended(ex, conn, chosen))
        ex.on_done = done

    def _ended(self, ex: Exchange, conn: Downstream, chosen: list[int]) -> None:
        body = ex.replay
        if body is None or len(body) > self.keeper.replay_limit:
            for i in chosen:
                self.plane.mirror_outcome(self.idx, i, "too_large")
        elif _whole(ex, body):               # else the client left before its body ended: nothing to copy
            self._fire(ex, conn, chosen, bytes(body))

    def _fire(self, ex: Exchange, conn: Downstream, chosen: list[int], body: bytes | None) -> None:
        head, host = _head(ex, body), ex.host
        for i in chosen:
            picked = self.mirrors[i](None, conn.worker.now)
            if picked is None:
                self.plane.mirror_outcome(self.idx, i, "failed")
            elif IN_FLIGHT[0] >= self.max_in_flight:
                self.plane.mirror_outcome(self.idx, i, "dropped")
            else:
                IN_FLIGHT[0] += 1
                conn.worker.loop.create_task(self._send(i, picked, head, host, body))

    async def _send(self, i: int, picked: Picked, head: bytes, host: bytes, body: bytes | None) -> None:
        service, backend, _ = picked
        head += b"Host: %s\r\n\r\n" % (host if service.pass_host_header else backend.host_header)
        backend.acquire()
        outcome = "failed"
        try:
            outcome = await asyncio.wait_for(_exchange(backend, head, body), self.timeout)
        except TimeoutError:
            outcome = "timeout"
        except OSError as e:
            log.debug("mirror %s: %s", backend.shown_url, e)
        finally:
            backend.release()
            IN_FLIGHT[0] -= 1
            self.plane.mirror_outcome(self.idx, i, outcome)


def _whole(ex: Exchange, body: bytearray) -> bool:
    """Whether ``body`` is all of the request's body: the client ended it, or it has the declared Content-Length
    (an HTTP/2 backend may answer, and the exchange end, before the client's END_STREAM is read)."""
    if ex.req_done:
        return True
    length = None if ex.req_chunked else next((v for n, v in ex.headers if n.lower() == b"content-length"), None)
    return length is not None and length.isdigit() and int(length) == len(body)


def _head(ex: Exchange, body: bytes | None) -> bytes:
    """The copy's request head but its Host field (which depends on the mirror's backend), with framing for ``body``:
    chunked as it arrived from an HTTP/1.1 client (the kept bytes carry the framing), else a Content-Length."""
    fields: Fields = [f for f in ex.headers if f[0].lower() not in FRAMING]
    if body is not None:
        fields.append((b"Transfer-Encoding", b"chunked") if ex.req_chunked and ex.http11
                      else (b"Content-Length", b"%d" % len(body)))
    fields += [(b"X-Forwarded-For", ex.xff), (b"X-Forwarded-Host", ex.host), (b"Connection", b"close")]
    return b"".join([ex.method, b" ", ex.target, b" HTTP/1.1\r\n", *[b"%s: %s\r\n" % f for f in fields]])


async def _exchange(backend: Backend, head: bytes, body: bytes | None) -> str:
    """Send one copy on a connection of its own and read the answer to its end, discarding it."""
    pool = backend.pool
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await pool.open(lambda: protocol, pool.ssl)  # type: ignore[arg-type]
    writer = asyncio.StreamWriter(transport, protocol, reader, asyncio.get_running_loop())
    try:
        writer.write(head)
        if body:
            writer.write(body)
        first = await reader.read(16)
        while await reader.read(65536):
            pass
        return "sent" if first.startswith(b"HTTP/") else "failed"
    finally:
        writer.close()
