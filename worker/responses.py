"""Responses the gateway itself writes: every error body is built here and nowhere else.

Error bodies are JSON objects ``{"error": "<message>"}`` serialized by orjson, so any text is escaped
correctly. Messages for the common statuses keep the original implementation's wording (clients may match on
them). Each builder returns the complete HTTP/1.1 message as one ``bytes`` so it goes out in one write.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson

from ..shared.config.redact import redact_url

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
}


def reason(status: int) -> bytes:
    return REASONS.get(status, b"Unknown")


def build(status: int, body: bytes, content_type: bytes, *, close: bool,
          extra_headers: list[tuple[bytes, bytes]] | None = None, keep_alive_header: bool = False) -> bytes:
    """A complete response with a Content-Length body."""
    parts = [b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status, reason(status), content_type, len(body))]
    if extra_headers:
        parts.extend(b"%s: %s\r\n" % (n, v) for n, v in extra_headers)
    if close:
        parts.append(b"Connection: close\r\n")
    elif keep_alive_header:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


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


def too_large(max_bytes: int, *, close: bool) -> bytes:
    """413 naming the request-body limit that was passed (``[limits] max_body_bytes`` or ``body-limit``)."""
    return build(413, error_body(413, None, max_bytes=max_bytes), b"application/json", close=close)


def error(status: int, message: str | None = None, *, close: bool = False, head: bool = False,
          extra_headers: list[tuple[bytes, bytes]] | None = None, keep_alive_header: bool = False) -> bytes:
    """A JSON error response; for HEAD requests the body is left out but Content-Length kept."""
    body = error_body(status, message)
    data = build(status, body, b"application/json", close=close, extra_headers=extra_headers,
                 keep_alive_header=keep_alive_header)
    return data[: len(data) - len(body)] if head else data
