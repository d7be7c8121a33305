"""Locust scenarios for a3s-gateway: the traffic shapes users care about, one user class per shape.

Run through ``loadtest/locust_run.py`` (it starts the origin and the gateway with the matching routes), or by
hand against a gateway routing these prefixes to ``locust_run.py origin``:

    /plain/...   plain proxying (small GETs)                          PlainProxyUser   tag: proxy
    /large/...   1 MiB uploads echoed back, 1 MiB downloads             LargeBodyUser    tag: large
    /auth/...    JWT (HS256, ``type="jwt"``, ``value=<secret>``) +      AuthRateLimitUser tag: auth
                 ``rate-limit`` (``rate``, ``burst``): 429 counts as the limiter working, 401 is checked too
    /sse/...     an SSE stream held open while events arrive            SseUser          tag: sse
    /ws/...      WebSocket chatter: short messages echoed back          WebSocketUser    tag: ws
    mixed        a weighted blend of all of the above                   MixedUser        tag: mixed

Pick a profile by naming user classes on the locust command line (``locust -f loadtest/locustfile.py
PlainProxyUser LargeBodyUser``); ``locust_run.py --profile`` does that for you.

Environment: ``LOADTEST_JWT_SECRET`` (must match the gateway's jwt ``value``), ``LOADTEST_BODY_BYTES`` (large
body size, default 1 MiB), ``LOADTEST_SSE_EVENTS`` (events read per stream, default 20), ``LOADTEST_WS_MESSAGES``
(messages per WebSocket session, default 20). Every request goes to ``--host``, which the runner sets to a
127.0.0.1 address.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar
from urllib.parse import urlsplit

from locust import HttpUser, between, constant, tag

JWT_SECRET = os.environ.get("LOADTEST_JWT_SECRET", "loadtest-secret-change-me")
BODY_BYTES = int(os.environ.get("LOADTEST_BODY_BYTES", str(1 << 20)))
SSE_EVENTS = int(os.environ.get("LOADTEST_SSE_EVENTS", "20"))
WS_MESSAGES = int(os.environ.get("LOADTEST_WS_MESSAGES", "20"))

_BODY = bytes(range(256)) * (BODY_BYTES // 256) + b"x" * (BODY_BYTES % 256)


def _token(subject: str, ttl: float = 3600.0) -> str:
    import jwt  # PyJWT, a gateway dependency

    now = int(time.time())
    return jwt.encode({"sub": subject, "iat": now, "exp": now + int(ttl)}, JWT_SECRET, algorithm="HS256")


# ------------------------------------------------------------------------------------------- scenarios
# Tasks are plain functions of the user, so MixedUser can weigh them together; each carries its tag.


@tag("proxy")
def plain_get_small(user: HttpUser) -> None:
    with user.client.get("/plain/hello", name="/plain/hello", catch_response=True) as r:
        if r.status_code != 200 or r.content != b"hello\n":
            r.failure(f"status {r.status_code}, body {r.content[:60]!r}")


@tag("proxy")
def plain_get_with_query(user: HttpUser) -> None:
    with user.client.get("/plain/items?page=2&size=50", name="/plain/items?…", catch_response=True) as r:
        if r.status_code != 200:
            r.failure(f"status {r.status_code}")


@tag("large")
def large_upload_echo(user: HttpUser) -> None:
    with user.client.post(
        "/large/echo",
        data=_BODY,
        name="/large/echo [POST large body]",
        catch_response=True,
        headers={"Content-Type": "application/octet-stream"},
    ) as r:
        if r.status_code != 200 or r.content != _BODY:
            r.failure(
                f"status {r.status_code}, {len(r.content)} of {len(_BODY)} bytes (intact: {r.content == _BODY})"
            )


@tag("large")
def large_download(user: HttpUser) -> None:
    with user.client.get(
        f"/large/blob?size={BODY_BYTES}", name="/large/blob [GET large body]", catch_response=True
    ) as r:
        if r.status_code != 200 or len(r.content) != BODY_BYTES:
            r.failure(f"status {r.status_code}, {len(r.content)} of {BODY_BYTES} bytes")


@tag("auth")
def auth_authorized(user: HttpUser) -> None:
    token = getattr(user, "jwt_token", None)
    if token is None:
        token = user.jwt_token = _token(f"user-{id(user)}")
    with user.client.get(
        "/auth/me", name="/auth/me", headers={"Authorization": f"Bearer {token}"}, catch_response=True
    ) as r:
        if r.status_code == 429:
            # The limiter doing its job: reported apart, not as a failure.
            r.request_meta["name"] = "/auth/me [429 rate-limited]"
            r.success()
        elif r.status_code != 200:
            r.failure(f"status {r.status_code}")


@tag("auth")
def auth_unauthorized(user: HttpUser) -> None:
    with user.client.get("/auth/me", name="/auth/me [no token → 401]", catch_response=True) as r:
        if r.status_code in (401, 429):
            r.success()
        else:
            r.failure(f"expected 401 without a token, got {r.status_code}")


@tag("sse")
def sse_hold_stream(user: HttpUser) -> None:
    start = time.perf_counter()
    events = 0
    with user.client.get(
        f"/sse/stream?events={SSE_EVENTS}&interval_ms=50",
        name="/sse/stream [held open]",
        stream=True,
        catch_response=True,
        headers={"Accept": "text/event-stream"},
    ) as r:
        if r.status_code != 200:
            r.failure(f"status {r.status_code}")
            return
        if not r.headers.get("Content-Type", "").startswith("text/event-stream"):
            r.failure(f"content-type {r.headers.get('Content-Type')!r}")
            return
        for line in r.iter_lines():
            if line.startswith(b"data:"):
                events += 1
                if events >= SSE_EVENTS:
                    break
        if events < SSE_EVENTS:
            elapsed = time.perf_counter() - start
            r.failure(f"stream ended after {events} of {SSE_EVENTS} events ({elapsed:.1f}s)")


@tag("ws")
def ws_chatter(user: HttpUser) -> None:
    from websockets.sync.client import connect

    url = "ws://" + urlsplit(user.host).netloc + "/ws/echo"
    start = time.perf_counter()
    exc: Exception | None = None
    received = 0
    try:
        with connect(url, open_timeout=10, close_timeout=5, max_size=1 << 20) as ws:
            for i in range(WS_MESSAGES):
                msg = f"message {i} from {id(user)}"
                ws.send(msg)
                if ws.recv(timeout=10) != msg:
                    raise AssertionError(f"echo mismatch on message {i}")
                received += len(msg)
    except Exception as e:  # noqa: BLE001 - any error is a failed session in the report
        exc = e
    user.environment.events.request.fire(
        request_type="WS",
        name="/ws/echo [session]",
        response_time=(time.perf_counter() - start) * 1000,
        response_length=received,
        exception=exc,
        context={},
    )


# ------------------------------------------------------------------------------------------- users


class PlainProxyUser(HttpUser):
    """Plain proxying: many small GETs."""

    weight = 4
    wait_time = constant(0)
    tasks: ClassVar = {plain_get_small: 5, plain_get_with_query: 1}


class LargeBodyUser(HttpUser):
    """Large bodies both ways (1 MiB by default): the request and the response path under volume."""

    weight = 1
    wait_time = between(0.05, 0.2)
    tasks: ClassVar = {large_upload_echo: 1, large_download: 1}


class AuthRateLimitUser(HttpUser):
    """JWT-protected routes behind a rate limiter."""

    weight = 2
    wait_time = constant(0)
    tasks: ClassVar = {auth_authorized: 10, auth_unauthorized: 1}


class SseUser(HttpUser):
    """Server-sent event streams held open while events trickle in."""

    weight = 1
    wait_time = between(0.1, 0.5)
    tasks: ClassVar = [sse_hold_stream]


class WebSocketUser(HttpUser):
    """WebSocket sessions exchanging short messages."""

    weight = 1
    wait_time = between(0.1, 0.5)
    tasks: ClassVar = [ws_chatter]


class MixedUser(HttpUser):
    """Every scenario in one user, plain proxying dominating, as a production mix might look."""

    weight = 1
    wait_time = between(0.0, 0.1)
    tasks: ClassVar = {
        plain_get_small: 20,
        plain_get_with_query: 4,
        large_upload_echo: 1,
        large_download: 1,
        auth_authorized: 8,
        auth_unauthorized: 1,
        sse_hold_stream: 1,
        ws_chatter: 1,
    }
