"""``websocket-mux``: let the router's clients multiplex many WebSocket channels over one connection.

Opt-in per router: an HTTP/1.1 WebSocket upgrade whose ``Sec-WebSocket-Protocol`` offers ``a3s-mux.v1`` is
answered by the gateway itself (``proxy/websocket_mux.py``: ``exchange.start`` sees this middleware's
``MuxService``); every other request, a plain WebSocket included, goes on to the router's service unchanged.
Middlewares listed before this one apply to the multiplexed connection; each channel is routed afresh and gets
the request phase of the router it matches. HTTP/2 WebSockets (RFC 8441) are not multiplexed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware
from ..proxy.websocket_mux import MuxLimits, MuxService, offers_mux
from ..services import balancer

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker


class WebsocketMux(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        limits = MuxLimits(params["max_channels"], params["window"], params["max_channel_buffer"],
                           params["max_buffered_bytes"], params["max_message_bytes"])
        self.service = MuxService(f"{name}@websocket-mux", [], balancer.RoundRobin([]), True, 0, 0,
                                  internal="websocket-mux", limits=limits)

    def on_request(self, ex: Exchange) -> None:
        if ex.upgrade and ex.http11 and offers_mux(ex.raw):
            ex.service = self.service
        return None
