"""``compress``: compress response bodies with br, gzip or deflate, as the client's Accept-Encoding allows.

Negotiation honours q-values (``q=0`` excludes a coding, ``*`` stands for codings not named); among equal
q-values br beats gzip beats deflate. Compressed: responses whose Content-Type is text (``text/*``) or
JSON/XML/JavaScript/CSS/SVG, at least ``min_bytes`` long when the length is known. Never compressed:
``text/event-stream``, already-encoded bodies, ranges (206 or Content-Range), ``Cache-Control: no-transform``,
HEAD, 1xx/204/304.

Compression streams: each upstream chunk is compressed and flushed at once (a sync flush), so a slow stream
reaches the client as it comes; Content-Length is dropped (the proxy frames the body) and a strong ETag made
weak. ``Vary: Accept-Encoding`` is added whenever the body could have been compressed.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import brotli

from ..chain import Middleware, header_value

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

PREFERENCE = (b"br", b"gzip", b"deflate")
_COMPRESSIBLE = (b"json", b"xml", b"javascript", b"css", b"svg", b"html")
_NEVER_STATUS = frozenset((204, 206, 304))


def negotiate(accept_encoding: bytes | None) -> bytes | None:
    """The preferred supported coding of an Accept-Encoding value, or None (identity)."""
    if not accept_encoding:
        return None
    q: dict[bytes, float] = {}
    for item in accept_encoding.lower().split(b","):
        coding, _, params = item.partition(b";")
        weight = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key == b"q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        q[coding.strip()] = weight
    wildcard = q.get(b"*", 0.0)
    best, best_q = None, 0.0
    for coding in PREFERENCE:
        weight = q.get(coding, wildcard)
        if weight > best_q:
            best, best_q = coding, weight
    return best


def compressible(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    ct = content_type.lower().partition(b";")[0].strip()
    if ct == b"text/event-stream":
        return False
    return ct.startswith(b"text/") or any(t in ct for t in _COMPRESSIBLE)


class ZlibFilter:
    """gzip (wbits 31) or zlib-wrapped deflate (wbits 15), as HTTP's ``deflate`` means."""

    def __init__(self, wbits: int, level: int) -> None:
        self.z = zlib.compressobj(level, zlib.DEFLATED, wbits)

    def feed(self, data: bytes) -> bytes:
        return self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self.z.flush()


class BrotliFilter:
    def __init__(self, quality: int) -> None:
        self.c = brotli.Compressor(quality=quality)

    def feed(self, data: bytes) -> bytes:
        return self.c.process(data) + self.c.flush()

    def finish(self) -> bytes:
        return self.c.finish()


class Compress(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.min_bytes = params["min_bytes"]
        self.level = params["level"]

    def make_filter(self, coding: bytes) -> ZlibFilter | BrotliFilter:
        if coding == b"br":
            return BrotliFilter(self.level)
        return ZlibFilter(31 if coding == b"gzip" else 15, self.level)

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if ex.is_head or status < 200 or status in _NEVER_STATUS:
            return
        content_type = length = etag = None
        for name, value in headers:
            ln = name.lower()
            if ln == b"content-type":
                content_type = value
            elif ln == b"content-length":
                length = value
            elif ln == b"etag":
                etag = value
            elif ln in (b"content-encoding", b"content-range") or (
                    ln == b"cache-control" and b"no-transform" in value.lower()):
                return
        if not compressible(content_type):
            return
        headers.append((b"Vary", b"Accept-Encoding"))
        if length is not None and length.isdigit() and int(length) < self.min_bytes:
            return
        coding = negotiate(header_value(ex.headers, b"accept-encoding"))
        if coding is None:
            return
        headers.append((b"Content-Encoding", coding))
        if etag is not None and not etag.startswith(b"W/"):
            headers[:] = [(n, b"W/" + v) if n.lower() == b"etag" else (n, v) for n, v in headers]
        ex.filter = self.make_filter(coding)
