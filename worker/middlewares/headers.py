"""``headers``: set, append and remove request and response headers.

``request_headers``/``response_headers`` set (replace every existing value); an empty value removes the header
instead, as Traefik's ``customRequestHeaders`` do. ``add_*`` append a value, ``remove_*`` delete by name.
Order per phase: remove, then set, then add. Setting ``Host`` on the request changes the forwarded Host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware, remove_headers

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

Edit = tuple[frozenset[bytes], list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]


def _edit(set_map: dict[str, str], add_map: dict[str, str], remove: list[str]) -> Edit:
    """(names to drop, pairs to append after dropping, pairs to append) for one direction."""
    drop = frozenset(n.lower().encode() for n in [*remove, *set_map])
    put = [(n.encode(), v.encode()) for n, v in set_map.items() if v != ""]
    add = [(n.encode(), v.encode()) for n, v in add_map.items()]
    return drop, put, add


class Headers(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        drop, put, add = _edit(params["request_headers"], params["add_request_headers"],
                               params["remove_request_headers"])
        host = [v for n, v in put if n.lower() == b"host"]
        self.request_host = host[-1] if host else None
        self.request: Edit = (drop - {b"host"}, [h for h in put if h[0].lower() != b"host"], add)
        self.response: Edit = _edit(params["response_headers"], params["add_response_headers"],
                                    params["remove_response_headers"])

    def on_request(self, ex: Exchange) -> None:
        if self.request_host is not None:
            ex.host = self.request_host
        _apply(self.request, ex.headers)

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        _apply(self.response, headers)


def _apply(edit: Edit, headers: list[tuple[bytes, bytes]]) -> None:
    drop, put, add = edit
    if drop:
        remove_headers(headers, drop)
    headers += put
    headers += add
