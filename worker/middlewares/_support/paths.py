"""Request-target helpers shared by the middlewares that read or rewrite paths and query strings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...chain import Reply, remove_headers

if TYPE_CHECKING:
    from ...exchange import Exchange


def split_target(target: bytes) -> tuple[bytes, list[bytes]]:
    """``(path, ["k=v", ...])`` of an origin-form request target (empty parameters dropped)."""
    path, _, query = target.partition(b"?")
    return path, [p for p in query.split(b"&") if p]


def with_path(target: bytes, path: bytes) -> bytes:
    """``target`` with its path replaced (a leading ``/`` added when missing) and its query kept."""
    _, sep, query = target.partition(b"?")
    if path[:1] != b"/":
        path = b"/" + path
    return path + sep + query


def set_forwarded_prefix(ex: Exchange, prefix: bytes) -> None:
    """Tell the backend which prefix was removed (replacing any client-sent ``X-Forwarded-Prefix``)."""
    remove_headers(ex.headers, {b"x-forwarded-prefix"})
    ex.headers.append((b"X-Forwarded-Prefix", prefix))


def redirect(ex: Exchange, location: bytes, permanent: bool) -> Reply:
    """A redirect to ``location``; GET/HEAD get 301/302, other methods 308/307 (method and body kept)."""
    if ex.method in (b"GET", b"HEAD"):
        status = 301 if permanent else 302
    else:
        status = 308 if permanent else 307
    return Reply(status, b"", [(b"Location", location), (b"Content-Type", b"text/plain")])
