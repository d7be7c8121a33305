"""The ``a3s-mux.v1`` WebSocket multiplexing framing (docs/protocols/websocket-multiplexing.md), shared by the
gateway (``worker/proxy/websocket_mux.py``) and the Python client (``shared/wsmux_client.py``).

One WebSocket carries many logical channels, each named by a client-chosen id in ``1..MAX_CHANNEL``:

- a *control* message is a text message holding one JSON object (its first byte is ``{``) with an ``op``
  (``hello``, ``open``, ``opened``, ``close``, ``error``, ``credit``) and, except ``hello``, a ``ch``;
- a *binary data* message is the channel id as 4 bytes big-endian, then the payload;
- a *text data* message is the channel id in decimal (no sign, no leading zero), ``:``, then the payload.

Invariants: channel id 0 is never a data channel (``error`` on ch 0 is about the connection); the payload of a
data message is exactly what the channel's backend sends or receives as one WebSocket message. Functions work on
``bytes`` (the gateway never decodes text payloads) and, for text, on ``str`` too (the client).
"""

from __future__ import annotations

import struct
from typing import Any, TypeVar

import orjson

SUBPROTOCOL = "a3s-mux.v1"
MAX_CHANNEL = 0xFFFFFFFF
_ID = struct.Struct(">I")
_MAX_DIGITS = 10

AnyStr = TypeVar("AnyStr", str, bytes)


class FramingError(ValueError):
    """A message that is not valid ``a3s-mux.v1`` framing."""


def binary(ch: int, payload: bytes) -> bytes:
    """A binary data message for channel ``ch``."""
    return _ID.pack(ch) + payload


def split_binary(message: bytes) -> tuple[int, bytes]:
    """(channel id, payload) of a binary data message."""
    if len(message) < 4:
        raise FramingError("a binary data message starts with a 4-byte channel id")
    ch = _ID.unpack_from(message)[0]
    if ch == 0:
        raise FramingError("channel id 0 carries no data")
    return ch, message[4:]


def text(ch: int, payload: AnyStr) -> AnyStr:
    """A text data message for channel ``ch`` (``str`` in, ``str`` out; ``bytes`` in, UTF-8 ``bytes`` out)."""
    if isinstance(payload, str):
        return f"{ch}:{payload}"
    return b"%d:%s" % (ch, payload)


def split_text(message: AnyStr) -> tuple[int, AnyStr]:
    """(channel id, payload) of a text data message."""
    sep = ":" if isinstance(message, str) else b":"
    i = message.find(sep, 0, _MAX_DIGITS + 1)  # type: ignore[arg-type]
    digits = message[:i]
    if i <= 0 or not digits.isdigit() or digits[:1] in ("0", b"0") or not digits.isascii():
        raise FramingError("a text data message starts with a decimal channel id and ':'")
    ch = int(digits)
    if ch > MAX_CHANNEL:
        raise FramingError("channel id out of range")
    return ch, message[i + 1:]


def is_control(message: str | bytes) -> bool:
    """Whether a text message is a control message (a JSON object) rather than text data."""
    return message[:1] in ("{", b"{")


def control(op: str, ch: int | None = None, **fields: Any) -> str:
    """A control message; ``fields`` set to None are left out."""
    body: dict[str, Any] = {"op": op}
    if ch is not None:
        body["ch"] = ch
    body.update((k, v) for k, v in fields.items() if v is not None)
    return orjson.dumps(body).decode()


def parse_control(message: str | bytes) -> dict[str, Any]:
    """The JSON object of a control message, its ``op`` a string and its ``ch`` (when present) a channel id."""
    try:
        body = orjson.loads(message)
    except orjson.JSONDecodeError as e:
        raise FramingError(f"a control message is a JSON object: {e}") from None
    if not isinstance(body, dict) or not isinstance(body.get("op"), str):
        raise FramingError("a control message is a JSON object with a string 'op'")
    ch = body.get("ch")
    if ch is not None and (ch.__class__ is not int or not 0 <= ch <= MAX_CHANNEL):
        raise FramingError(f"'ch' is a channel id in 0..{MAX_CHANNEL}")
    return body
