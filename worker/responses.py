"""Responses the gateway itself writes: every error body is built here and nowhere else.

Error bodies are JSON objects ``{"error": "<message>"}`` serialized by orjson, so any text is escaped
correctly. Messages for the common statuses keep the original implementation's wording (clients may match on
them).

An ``Answer`` (status, fields, body) is a response for an exchange: each wire protocol sends it its own way
(HTTP/1.1 serializes it with ``compose``, adding its connection fields; HTTP/2 sends HEADERS and DATA). ``error``
builds complete HTTP/1.1 bytes for what is written to a connection outside any exchange (a refused connection, a
malformed or timed-out request head).
"""

from __future__ import annotations

from http import HTTPStatus

import orjson

from ..shared.config.redact import redact_url
from .framing import clean_reason

REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}

NO_ROUTE = "No route matched"
NO_BACKEND = "No healthy backends"

_DEFAULT_MESSAGES = {
    400: "Bad request",
    404: NO_ROUTE,
    408: "Request timeout",
    413: "Request body too large",
    414: "URI too long",
    431: "Request header fields too large",
    500: "Internal server error",
    501: "Not implemented",
    502: "Bad gateway",
    503: NO_BACKEND,
    504: "Gateway timeout",
    505: "HTTP version not supported",
}


# Status lines by (status, upstream reason): built and checked once (bounded: reasons come from backends).
STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
STATUS_LINES_MAX = 256


def status_line(status: int, reason: bytes) -> bytes:
    line = STATUS_LINES.get((status, reason))
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, clean_reason(reason, REASONS.get(status, b"Unknown")))
        if len(STATUS_LINES) < STATUS_LINES_MAX:
            STATUS_LINES[status, reason] = line
    return line


def reason(status: int) -> bytes:
    return REASONS.get(status, b"Unknown")


class Answer:
    """A complete response the gateway sends itself; ``fields`` include Content-Type and Content-Length (for a
    HEAD request the body is left out when sent, the length kept)."""

    __slots__ = ("body", "fields", "status")

    def __init__(self, status: int, fields: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.fields = fields
        self.body = body


def answer(status: int, body: bytes, content_type: bytes) -> Answer:
    return Answer(status, [(b"Content-Type", content_type), (b"Content-Length", b"%d" % len(body))], body)


def compose(status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, close: bool, head: bool = False,
            keep_alive_header: bool = False) -> bytes:
    """A complete response with exactly ``headers`` (framing included by the caller); no body for HEAD."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status))]
    parts.extend(b"%s: %s\r\n" % h for h in headers)
    if close:
        parts.append(b"Connection: close\r\n")
    elif keep_alive_header:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not head:
        parts.append(body)
    return b"".join(parts)


def error_body(status: int, message: str | None = None, **fields: object) -> bytes:
    """``{"error": message, **fields}``; the message defaults to the status's usual wording. A URL's password in
    it (an exception's text may name a server) is masked: clients never see one."""
    body = orjson.dumps({"error": message or _DEFAULT_MESSAGES.get(status, reason(status).decode()), **fields})
    return body if b"@" not in body else redact_url(body.decode()).encode()


def too_large(max_bytes: int) -> Answer:
    """413 naming the request-body limit that was passed (``[limits] max_body_bytes`` or ``body-limit``)."""
    return answer(413, error_body(413, None, max_bytes=max_bytes), b"application/json")


def error_answer(status: int, message: str | None = None) -> Answer:
    """A JSON error response."""
    return answer(status, error_body(status, message), b"application/json")


def error(status: int, message: str | None = None) -> bytes:
    """A JSON error response as HTTP/1.1 bytes that close the connection (written outside any exchange)."""
    reply = error_answer(status, message)
    return compose(status, reply.fields, reply.body, close=True)
