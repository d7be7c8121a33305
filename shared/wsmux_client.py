"""A small asyncio client for ``a3s-mux.v1`` (docs/protocols/websocket-multiplexing.md), built on the
``websockets`` package (``pip install websockets``; the gateway itself does not need it)::

    async with MuxClient.connect("ws://gateway/mux") as mux:
        chat = await mux.open("/chat", headers={"Authorization": "Bearer ..."})
        await chat.send("hello")
        print(await chat.recv())
        await chat.close()

It keeps the protocol's flow control for the application: ``Channel.send`` waits while the channel's credit is
used up (so a stalled backend blocks only its own channel's senders), and credit goes back to the gateway as
``Channel.recv`` hands messages out (so an application that does not read one channel stops only that channel).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .wsmux import SUBPROTOCOL, binary, control, is_control, parse_control, split_binary, split_text, text


class ChannelError(Exception):
    """The gateway refused or ended a channel (``error``): ``status`` is the HTTP-style status it gave."""

    def __init__(self, ch: int, status: int, message: str) -> None:
        super().__init__(f"channel {ch}: {status} {message}")
        self.ch = ch
        self.status = status
        self.message = message


class ChannelClosed(Exception):
    """The channel was closed (``close``) with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class Channel:
    """One logical channel: ``send`` and ``recv`` WebSocket messages (``str`` is text, ``bytes`` binary)."""

    def __init__(self, mux: MuxClient, ch: int, window: int) -> None:
        self.mux = mux
        self.id = ch
        self.credit = window                  # payload bytes the gateway lets us send
        self.protocol: str | None = None
        self.status: int | None = None        # an HTTP channel's response status and headers
        self.headers: dict[str, str] = {}
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.messages: deque[str | bytes] = deque()
        self.end: Exception | None = None     # why the channel is over, once it is
        self.changed = asyncio.Event()        # a message, credit or the end arrived
        self.consumed = 0                     # bytes handed to the application, not yet granted back

    async def send(self, message: str | bytes) -> None:
        """Send one message, first waiting for credit (ChannelError/ChannelClosed when the channel ended)."""
        while self.credit <= 0 and self.end is None:
            self.changed.clear()
            await self.changed.wait()
        if self.end is not None:
            raise self.end
        size = len(message.encode() if isinstance(message, str) else message)
        self.credit -= size
        frame = text(self.id, message) if isinstance(message, str) else binary(self.id, message)
        await self.mux.ws.send(frame)

    async def recv(self) -> str | bytes:
        """The next message; raises ChannelClosed or ChannelError once the channel ended and nothing is left."""
        while not self.messages:
            if self.end is not None:
                raise self.end
            self.changed.clear()
            await self.changed.wait()
        message = self.messages.popleft()
        self.consumed += len(message.encode() if isinstance(message, str) else message)
        if self.consumed >= self.mux.window // 2:
            n, self.consumed = self.consumed, 0
            await self.mux.ws.send(control("credit", self.id, bytes=n))
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.end is None:
            self.end = ChannelClosed(code, reason)
            self.mux.channels.pop(self.id, None)
            self.changed.set()
            await self.mux.ws.send(control("close", self.id, code=code, reason=reason))

    def _ended(self, why: Exception) -> None:
        if self.end is None:
            self.end = why
        if not self.opened.done():
            self.opened.set_exception(why)
        self.changed.set()


class MuxClient:
    """One multiplexed WebSocket; ``open`` starts channels, a background task dispatches what arrives."""

    def __init__(self, ws: Any, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.window: int = hello["window"]
        self.max_channels: int = hello["max_channels"]
        self.channels: dict[int, Channel] = {}
        self.errors: list[dict[str, Any]] = []     # ``error`` on ch 0: control messages the gateway ignored
        self.next_id = 1
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, **kwargs: Any) -> AsyncIterator[MuxClient]:
        """Connect to a router with the ``websocket-mux`` middleware (``kwargs`` go to websockets' connect)."""
        from websockets.asyncio.client import connect

        kwargs.setdefault("max_size", None)
        async with connect(url, subprotocols=[SUBPROTOCOL], **kwargs) as ws:  # type: ignore[list-item]
            hello = parse_control(await ws.recv())
            mux = cls(ws, hello)
            try:
                yield mux
            finally:
                mux.reader.cancel()

    async def open(self, path: str, headers: dict[str, str | list[str]] | None = None,
                   protocols: list[str] | None = None, ch: int | None = None, kind: str = "websocket") -> Channel:
        """Open a channel to ``path`` (routed by the gateway like a request with ``headers``): a backend WebSocket,
        or with ``kind="http"`` a GET whose response body arrives as binary messages; raises ChannelError when
        the gateway or the backend refuses it."""
        if ch is None:
            ch, self.next_id = self.next_id, self.next_id + 1
        channel = self.channels[ch] = Channel(self, ch, self.window)
        await self.ws.send(control("open", ch, path=path, headers=headers or {}, protocols=protocols or None,
                                   kind=None if kind == "websocket" else kind))
        await channel.opened
        return channel

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self.ws:
                self._dispatch(message)
        except ConnectionClosed:
            pass
        for channel in list(self.channels.values()):
            channel._ended(ChannelClosed(1006, "the multiplexed connection closed"))

    def _dispatch(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            ch, payload = split_binary(message)
        elif is_control(message):
            return self._control(parse_control(message))
        else:
            ch, payload = split_text(message)
        channel = self.channels.get(ch)
        if channel is not None:
            channel.messages.append(payload)
            channel.changed.set()

    def _control(self, msg: dict[str, Any]) -> None:
        op, ch = msg["op"], msg.get("ch", 0)
        if op == "error" and ch == 0:
            self.errors.append(msg)
            return
        channel = self.channels.get(ch)
        if channel is None:
            return
        if op == "opened":
            channel.protocol = msg.get("protocol")
            channel.status = msg.get("status")
            channel.headers = msg.get("headers", {})
            channel.opened.set_result(None)
        elif op == "credit":
            channel.credit += msg["bytes"]
            channel.changed.set()
        elif op in ("close", "error"):
            del self.channels[ch]
            channel._ended(ChannelClosed(msg.get("code", 1000), msg.get("reason", "")) if op == "close" else
                           ChannelError(ch, msg.get("status", 0), msg.get("message", "")))
