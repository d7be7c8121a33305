"""RFC 6455 frames, for the one place the gateway speaks WebSocket itself rather than relaying bytes: the
multiplexer (``websocket_mux.py``), which ends the client's WebSocket and opens one to each channel's backend.

``encode`` builds one unfragmented frame (masked when the gateway is the client, RFC 6455 §5.3). ``FrameReader``
turns received bytes into whole messages and control frames. Invariants it keeps: a message (all its fragments)
never exceeds ``max_message`` bytes and no more than that is buffered (1009 otherwise); frames from a client
are masked and frames from a server are not (1002 otherwise); no extension is negotiated, so RSV bits are
refused; control frames are final and at most 125 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
_DATA = (TEXT, BINARY)
_CONTROL = (CLOSE, PING, PONG)
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_NOT_SENT = frozenset((1004, 1005, 1006, 1015))     # reserved: reported locally, never put on the wire


class ProtocolError(Exception):
    """The peer broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` answering a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


def encode(opcode: int, payload: bytes, mask: bool = False) -> bytes:
    """One final frame."""
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((0x80 | opcode, bit | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, bit | 126)) + _U16.pack(n)
    else:
        head = bytes((0x80 | opcode, bit | 127)) + _U64.pack(n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + unmask(payload, key)


def unmask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``key`` (one big-integer XOR: no per-byte Python loop)."""
    n = len(data)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload; a code that may not be sent (1005, 1006, 1015, or one outside 1000-4999, RFC 6455
    §7.4) becomes 1000."""
    if not 1000 <= code <= 4999 or code in _NOT_SENT:
        code = 1000
    return _U16.pack(code) + reason.encode()[:123]


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame; 1005 when it has no code."""
    if len(payload) < 2:
        return 1005, ""
    return _U16.unpack_from(payload)[0], payload[2:].decode("utf-8", "replace")


class FrameReader:
    """Whole messages from a byte stream: ``feed`` returns ``(opcode, payload)`` for each complete data message
    (TEXT or BINARY, fragments joined) and each control frame, in order."""

    __slots__ = ("buf", "masked", "max_message", "parts", "part_op", "part_bytes")

    def __init__(self, masked: bool, max_message: int) -> None:
        self.buf = bytearray()
        self.masked = masked
        self.max_message = max_message
        self.parts: list[bytes] = []
        self.part_op = 0
        self.part_bytes = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while True:
            frame = self._frame(buf, pos)
            if frame is None:
                break
            pos, fin, opcode, payload = frame
            if opcode in _CONTROL:
                out.append((opcode, payload))
                continue
            if opcode == CONT:
                if not self.part_op:
                    raise ProtocolError(1002, "continuation frame without a message")
            elif self.part_op:
                raise ProtocolError(1002, "new message before the last one ended")
            else:
                self.part_op = opcode
            self.part_bytes += len(payload)
            if self.part_bytes > self.max_message:
                raise ProtocolError(1009, "message too big")
            self.parts.append(payload)
            if fin:
                out.append((self.part_op, b"".join(self.parts)))
                self.parts, self.part_op, self.part_bytes = [], 0, 0
        del buf[:pos]
        if len(buf) > self.max_message + 14:           # a frame head never needs more
            raise ProtocolError(1009, "message too big")
        return out

    def _frame(self, buf: bytearray, pos: int) -> tuple[int, bool, int, bytes] | None:
        if len(buf) - pos < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        if b0 & 0x70:
            raise ProtocolError(1002, "reserved bits set")
        opcode = b0 & 0x0F
        if opcode not in _DATA and opcode not in _CONTROL and opcode != CONT:
            raise ProtocolError(1002, "unknown opcode")
        if bool(b1 & 0x80) is not self.masked:
            raise ProtocolError(1002, "client frames are masked, server frames are not")
        n = b1 & 0x7F
        at = pos + 2
        if n >= 126:
            if opcode in _CONTROL:
                raise ProtocolError(1002, "control frame too long")
            size = 2 if n == 126 else 8
            if len(buf) - at < size:
                return None
            n = (_U16 if size == 2 else _U64).unpack_from(buf, at)[0]
            at += size
        if opcode in _CONTROL and not b0 & 0x80:
            raise ProtocolError(1002, "fragmented control frame")
        if n > self.max_message:
            raise ProtocolError(1009, "message too big")
        key = b""
        if self.masked:
            if len(buf) - at < 4:
                return None
            key = bytes(buf[at:at + 4])
            at += 4
        if len(buf) - at < n:
            return None
        payload = bytes(buf[at:at + n])
        return at + n, bool(b0 & 0x80), opcode, unmask(payload, key) if key else payload
