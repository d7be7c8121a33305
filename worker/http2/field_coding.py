"""The HPACK coders both HTTP/2 sides install (``install_hpack``): the pure-Python ``hpack`` coder is a large
part of a stream's cost, so both sides replace it. ``FieldEncoder`` never uses the dynamic table (as nginx does):
each field is a static-table index or a literal without indexing, which depends on nothing but the field, so
encoded fields are kept and reused by every connection. ``RepeatDecoder`` remembers small header blocks that left
its table unchanged (what a client repeating a request sends once its fields are indexed) with the table version
they were decoded against.
"""

from __future__ import annotations

from typing import Any

import h2.connection
import hpack
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.struct import HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

_STATIC = HeaderTable.STATIC_TABLE_MAPPING     # name -> (index of its first entry, {value: index})
_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_FIELDS: dict[tuple[bytes, bytes], bytes] = {}
_FIELDS_MAX = 4096
_FIELD_VALUE_MAX = 128                          # longer values (cookies, tokens) are encoded every time
_NOT_KEPT = frozenset((b"set-cookie", b"cookie", b"authorization", b"proxy-authorization"))


def _string(data: bytes) -> bytes:
    """An HPACK string literal: Huffman-coded when that is shorter."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        length = encode_integer(len(coded), 7)
        length[0] |= 0x80
        return bytes(length) + coded
    return bytes(encode_integer(len(data), 7)) + data


def _field(name: bytes, value: bytes, never_indexed: bool) -> bytes:
    """One field without the dynamic table: a static index, or a literal "without indexing" ("never indexed"
    for a sensitive field), its name a static index where the table has the name."""
    entry = _STATIC.get(name)
    if entry is None:
        return (b"\x10" if never_indexed else b"\x00") + _string(name) + _string(value)
    index = entry[1].get(value)
    if index is not None:
        return bytes((0x80 | index,))          # static indexes are < 127: one byte
    prefix = encode_integer(entry[0], 4)
    if never_indexed:
        prefix[0] |= 0x10
    return bytes(prefix) + _string(value)


class FieldEncoder(hpack.Encoder):
    """An HPACK encoder that leaves the dynamic table empty, so a field always encodes to the same bytes: they
    are computed once per field and kept (module-wide, bounded; long and credential-bearing values are not).
    It costs some bytes on the wire per response and saves most of the encoding time."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        block = []
        table = self.header_table
        if table.resized:                      # the peer changed SETTINGS_HEADER_TABLE_SIZE: say we follow it
            block.append(self._encode_table_size_change())
            table.resized = False
        fields = _FIELDS
        for header in headers:
            sensitive = header.__class__ is NeverIndexedHeaderTuple
            encoded = None if sensitive else fields.get(header)
            if encoded is None:
                name, value = header[0], header[1]
                encoded = _field(name, value, sensitive)
                if not sensitive and len(value) <= _FIELD_VALUE_MAX and name not in _NOT_KEPT:
                    if len(fields) >= _FIELDS_MAX:
                        fields.clear()
                    fields[(name, value)] = encoded
            block.append(encoded)
        return b"".join(block)


class _VersionedTable(HeaderTable):
    """A decoder's table that counts its changes, so a decoded block can be known to still decode the same."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.version += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class RepeatDecoder(hpack.Decoder):
    """An HPACK decoder that remembers the blocks that left its table unchanged (table references only, as a
    client repeating a request sends): the same bytes against the same table version decode to the same list.
    Only small blocks are kept, a few per connection, and none once the table changed (their fields are then
    all in the current table: nothing evicted is kept alive)."""

    BLOCKS_MAX = 8
    BLOCK_MAX_BYTES = 256
    BLOCK_MAX_FIELDS = 32

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self.header_table = _VersionedTable()
        self.blocks: dict[bytes, tuple[int, int, list[HeaderTuple]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:  # type: ignore[override]
        table = self.header_table
        version = table.version
        hit = self.blocks.get(data)
        if hit is not None and hit[0] == version and hit[1] == self.max_header_list_size and raw:
            self._assert_valid_table_size()    # the limit may have shrunk since (SETTINGS acknowledged)
            return list(hit[2])
        headers = list(super().decode(data, raw))
        if table.version != version:
            self.blocks.clear()
        elif raw and len(data) <= self.BLOCK_MAX_BYTES and len(headers) <= self.BLOCK_MAX_FIELDS:
            if len(self.blocks) >= self.BLOCKS_MAX:
                self.blocks.clear()
            self.blocks[bytes(data)] = (version, self.max_header_list_size, headers)
            return list(headers)
        return headers


def install_hpack(conn: h2.connection.H2Connection) -> None:
    """Give ``conn`` the cheaper coders, before it sends or receives anything."""
    decoder = RepeatDecoder(conn.decoder.max_header_list_size)
    decoder.max_allowed_table_size = conn.decoder.max_allowed_table_size
    conn.decoder = decoder
    conn.encoder = FieldEncoder()
