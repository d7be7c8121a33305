"""The HPACK coders ``install_hpack`` gives an HTTP/2 connection (worker/http2/field_coding.py), checked against
the reference ``hpack`` library: what ``FieldEncoder`` writes decodes to the same fields with ``hpack.Decoder``
(and never touches the dynamic table), and what ``hpack.Encoder`` writes (dynamic table, size changes) decodes the
same with ``RepeatDecoder`` as with ``hpack.Decoder``, including blocks answered from the repeat cache, which must never
outlive a table change or a lowered limit, and which stays within its documented bounds."""

from __future__ import annotations

import random

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from a3s_gateway.worker.http2 import field_coding as h2base
from a3s_gateway.worker.http2.field_coding import FieldEncoder, RepeatDecoder, install_hpack
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hyperframe.frame import Frame, HeadersFrame

Fields = list[tuple[bytes, bytes]]
BIG = 1 << 22                                  # a header list size limit no test list reaches


def coders(client_side: bool = False) -> tuple[FieldEncoder, RepeatDecoder]:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=client_side, header_encoding=None))
    install_hpack(conn)
    assert isinstance(conn.encoder, FieldEncoder) and isinstance(conn.decoder, RepeatDecoder)
    return conn.encoder, conn.decoder


def reference_decoder() -> hpack.Decoder:
    return hpack.Decoder(max_header_list_size=BIG)


def plain(headers: list[HeaderTuple]) -> Fields:
    return [(bytes(n), bytes(v)) for n, v in headers]


RESPONSE = [(b":status", b"200"), (b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"1234"),
            (b"server", b"a3s-gateway"), (b"date", b"Thu, 26 Nov 2026 09:00:00 GMT")]
REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", b"/"),
           (b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"curl/8.5.0"), (b"accept", b"*/*")]

LISTS: dict[str, Fields] = {
    "response": RESPONSE,
    "request": REQUEST,
    "static-exact": [(b":method", b"POST"), (b":path", b"/index.html"), (b":status", b"404"), (b":scheme", b"http")],
    "static-name-other-value": [(b":status", b"418"), (b":path", b"/api/v1/items?x=1"), (b"etag", b'"abc"')],
    "unknown-names": [(b"x-request-id", b"4bf92f3577b34da6"), (b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")],
    "empty-values": [(b"x-empty", b""), (b"etag", b""), (b":authority", b""), (b"accept", b"")],
    "long-values": [(b"x-long", b"v" * 5000), (b"location", b"/" + b"a" * 200), (b"x-at-limit", b"b" * 128),
                    (b"x-over-limit", b"c" * 129)],
    "credentials": [(b"cookie", b"session=" + b"s" * 40), (b"cookie", b"id=1"), (b"authorization", b"Bearer xyz"),
                    (b"proxy-authorization", b"Basic dXNlcjpwYXNz"), (b"set-cookie", b"id=1; Path=/; HttpOnly")],
    "non-ascii": [(b"x-bin", bytes(range(0x80, 0x100))), (b"x-latin1", "café".encode("latin-1")),
                  (b"x-utf8", "日本語".encode()), (b"x-controls", bytes(range(1, 32)))],
    "huffman-unfriendly": [(b"x-random", bytes(random.Random(7).randrange(256) for _ in range(300)))],
    "names-that-could-collide": [(b"a", b"bc"), (b"ab", b"c"), (b"abc", b"")],
    "repeated-name": [(b"x-dup", b"1"), (b"x-dup", b"2"), (b"x-dup", b"1")],
    "huge": [(b"x-field-%d" % i, b"value-%d" % i) for i in range(2000)],
}


# -- FieldEncoder -> hpack.Decoder


@pytest.mark.parametrize("name", list(LISTS))
def test_encoded_block_decodes_to_the_same_fields_with_the_reference_decoder(name: str) -> None:
    fields = LISTS[name]
    enc, _ = coders()
    block = enc.encode(fields)
    ref = reference_decoder()
    assert plain(ref.decode(block, raw=True)) == fields
    assert list(ref.header_table.dynamic_entries) == []        # nothing was added to the peer's table
    assert enc.encode(fields) == block                          # the same fields, the same bytes, every time
    assert coders()[0].encode(fields) == block                  # whichever connection encodes them
    assert plain(ref.decode(block, raw=True)) == fields


def test_blocks_of_one_connection_decode_in_sequence() -> None:
    """One peer decoder for all blocks (as on a connection): no block depends on an earlier one."""
    enc, _ = coders()
    ref = reference_decoder()
    rng = random.Random(1)
    names = list(LISTS)
    for _ in range(200):
        fields = LISTS[rng.choice(names)]
        assert plain(ref.decode(enc.encode(fields), raw=True)) == fields
    assert list(ref.header_table.dynamic_entries) == []


def test_no_field_uses_the_dynamic_table() -> None:
    """Every representation is an indexed static field (1xxxxxxx, index <= 61) or a literal without indexing
    (0000xxxx) / never indexed (0001xxxx): never "with incremental indexing" (01xxxxxx), never a dynamic index."""
    enc, _ = coders()
    for fields in LISTS.values():
        for field in fields:
            first = enc.encode([field])[0]
            if first & 0x80:
                assert 1 <= first & 0x7F <= 61, field
            else:
                assert first & 0xE0 == 0, field


def test_sensitive_fields_stay_never_indexed_even_after_the_same_field_was_cached() -> None:
    enc, _ = coders()
    ref = reference_decoder()
    for name, value in [(b"x-token", b"abc"), (b"authorization", b"Bearer t"), (b"user-agent", b"probe/1")]:
        assert type(ref.decode(enc.encode([(name, value)]), raw=True)[0]) is HeaderTuple
        decoded = ref.decode(enc.encode([NeverIndexedHeaderTuple(name, value)]), raw=True)
        assert type(decoded[0]) is NeverIndexedHeaderTuple and plain(decoded) == [(name, value)]
        assert type(ref.decode(enc.encode([(name, value)]), raw=True)[0]) is HeaderTuple


@pytest.mark.parametrize("name", list(LISTS))
def test_field_kinds_match_the_reference_encoder(name: str) -> None:
    """Plain fields decode as plain, never-indexed ones as never-indexed, as hpack.Encoder's blocks do."""
    fields = [NeverIndexedHeaderTuple(n, v) if i % 3 == 0 else HeaderTuple(n, v)
              for i, (n, v) in enumerate(LISTS[name])]
    ours = reference_decoder().decode(coders()[0].encode(fields), raw=True)
    theirs = reference_decoder().decode(hpack.Encoder().encode(fields), raw=True)
    assert [(type(h), bytes(h[0]), bytes(h[1])) for h in ours] == [(type(h), bytes(h[0]), bytes(h[1]))
                                                                    for h in theirs]


def test_the_field_cache_keeps_short_public_fields_only() -> None:
    enc, _ = coders()
    h2base._FIELDS.clear()
    enc.encode(LISTS["response"] + LISTS["long-values"] + LISTS["credentials"]
               + [NeverIndexedHeaderTuple(b"x-secret", b"s3cr3t")])
    kept = set(h2base._FIELDS)
    assert (b"content-type", b"text/html; charset=utf-8") in kept and (b"x-at-limit", b"b" * 128) in kept
    assert {f for f in kept if len(f[1]) > h2base._FIELD_VALUE_MAX} == set()
    assert {f for f in kept if f[0] in (b"cookie", b"set-cookie", b"authorization", b"proxy-authorization")} == set()
    assert (b"x-secret", b"s3cr3t") not in kept


def test_the_field_cache_is_bounded_and_right_after_it_was_emptied() -> None:
    enc, _ = coders()
    ref = reference_decoder()
    h2base._FIELDS.clear()
    total = h2base._FIELDS_MAX + 1500
    for start in range(0, total, 500):
        fields = [(b"x-n", b"%d" % i) for i in range(start, start + 500)]
        assert plain(ref.decode(enc.encode(fields), raw=True)) == fields
        assert 0 < len(h2base._FIELDS) <= h2base._FIELDS_MAX
    again = [(b"x-n", b"%d" % i) for i in range(0, total, 97)]    # some kept, some dropped when it was emptied
    assert plain(ref.decode(enc.encode(again), raw=True)) == again


@pytest.mark.parametrize("size", [0, 256, 1024, 65536])
def test_a_table_size_change_from_the_peer_is_signalled_once(size: int) -> None:
    enc, _ = coders()
    ref = hpack.Decoder(max_header_list_size=BIG)
    ref.max_allowed_table_size = 65536
    enc.header_table_size = size               # what h2 does on the peer's SETTINGS_HEADER_TABLE_SIZE
    first = enc.encode(RESPONSE)
    assert first[0] & 0xE0 == 0x20             # a dynamic table size update opens the block
    assert plain(ref.decode(first, raw=True)) == RESPONSE and ref.header_table_size == size
    second = enc.encode(RESPONSE)
    assert second[0] & 0xE0 != 0x20 and plain(ref.decode(second, raw=True)) == RESPONSE
    assert second == first[len(first) - len(second):]


def test_header_blocks_over_h2_connections_with_the_installed_coders() -> None:
    """A client and a server, each with install_hpack, in memory: both header lists arrive unchanged, and the
    fields h2 marks sensitive (authorization, short cookies) go out never-indexed."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    install_hpack(client)
    install_hpack(server)
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    request = REQUEST + [(b"authorization", b"Bearer abc"), (b"x-long", b"l" * 100), (b"cookie", b"a=1")]
    for stream_id in (1, 3, 5):                # repeats: the server's decoder may answer from its cache
        client.send_headers(stream_id, request, end_stream=True)
        wire = client.data_to_send()
        frame, length = Frame.parse_frame_header(memoryview(wire[:9]))
        frame.parse_body(memoryview(wire[9:9 + length]))
        assert isinstance(frame, HeadersFrame)
        kinds = {bytes(h[0]): type(h) for h in reference_decoder().decode(frame.data, raw=True)}
        assert kinds[b"authorization"] is NeverIndexedHeaderTuple and kinds[b"cookie"] is NeverIndexedHeaderTuple
        assert kinds[b"user-agent"] is HeaderTuple
        events = server.receive_data(wire)
        received = next(e for e in events if isinstance(e, h2.events.RequestReceived))
        assert plain(received.headers) == request
        server.send_headers(stream_id, RESPONSE, end_stream=True)
        events = client.receive_data(server.data_to_send())
        response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
        assert plain(response.headers) == RESPONSE
    assert len(server.decoder.blocks) == 1     # the same small, table-neutral block: kept once, reused


# -- hpack.Encoder -> RepeatDecoder


VOCAB: Fields = [(b":method", b"GET"), (b":method", b"POST"), (b":path", b"/"), (b":path", b"/api/items"),
                 (b":path", b"/api/items/42"), (b":scheme", b"https"), (b":authority", b"example.com"),
                 (b"user-agent", b"client/1.0"), (b"accept", b"application/json"), (b"x-request-id", b"r1"),
                 (b"x-request-id", b"r2"), (b"cookie", b"session=abc"), (b"x-long", b"q" * 150),
                 (b"x-empty", b""), (b"x-bin", b"\x80\xff\x00"), (b"content-type", b"application/grpc")]


def _hit(dec: RepeatDecoder, block: bytes) -> bool:
    kept = dec.blocks.get(block)
    return kept is not None and kept[0] == dec.header_table.version


def test_decoder_matches_the_reference_over_a_long_connection() -> None:
    """hpack.Encoder (dynamic table, evictions, size changes, repeated lists) on one side; the gateway's decoder
    and the reference decoder fed the same blocks agree on every list and on the table after each."""
    rng = random.Random(2026)
    enc = hpack.Encoder()
    _, dec = coders()
    ref = hpack.Decoder(max_header_list_size=dec.max_header_list_size)
    hits = 0
    previous: Fields = VOCAB[:4]
    for step in range(600):
        if step % 50 == 25:
            enc.header_table_size = rng.choice([0, 64, 256, 1024, 4096])
        if rng.random() < 0.4:
            fields = previous                  # a client repeating a request: fully indexed blocks
        else:
            fields = [VOCAB[0]] + rng.sample(VOCAB[1:], rng.randrange(1, 8))
        block = enc.encode(fields)
        hits += _hit(dec, block)
        ours = dec.decode(block, raw=True)
        assert ours == ref.decode(block, raw=True) and plain(ours) == [(bytes(n), bytes(v)) for n, v in fields]
        assert list(dec.header_table.dynamic_entries) == list(ref.header_table.dynamic_entries)
        assert dec.header_table_size == ref.header_table_size
        assert len(dec.blocks) <= RepeatDecoder.BLOCKS_MAX
        previous = fields
    assert hits > 50                           # the repeat cache answered many of them


def test_repeated_block_is_answered_from_the_cache_with_the_same_fields() -> None:
    enc = hpack.Encoder()
    _, dec = coders()
    first = enc.encode(REQUEST)                # literals with indexing: the table changes, nothing is kept
    assert plain(dec.decode(first, raw=True)) == REQUEST and dec.blocks == {}
    repeat = enc.encode(REQUEST)               # all indexes now
    assert len(repeat) == len(REQUEST) and repeat == enc.encode(REQUEST)
    assert plain(dec.decode(repeat, raw=True)) == REQUEST and _hit(dec, repeat)
    for _ in range(3):
        got = dec.decode(repeat, raw=True)
        assert plain(got) == REQUEST
        got.append((b"x-mutated", b"1"))       # what a caller does to its list does not reach the cache
    assert plain(dec.decode(repeat, raw=True)) == REQUEST


def test_a_cached_block_is_decoded_anew_after_the_table_changed() -> None:
    enc = hpack.Encoder()
    _, dec = coders()
    ref = reference_decoder()
    newest = b"\xbe"                            # index 62: the newest dynamic entry, whichever it is
    for block, expected in [
        (enc.encode([(b"x-a", b"1")]), [(b"x-a", b"1")]),
        (newest, [(b"x-a", b"1")]),
        (newest, [(b"x-a", b"1")]),
        (enc.encode([(b"x-b", b"2")]), [(b"x-b", b"2")]),        # a new entry: 62 is now x-b
        (newest, [(b"x-b", b"2")]),
        (b"\xbe\xbf", [(b"x-b", b"2"), (b"x-a", b"1")]),
        (enc.encode([(b"x-c", b"3")]), [(b"x-c", b"3")]),
        (b"\xbe\xbf", [(b"x-c", b"3"), (b"x-b", b"2")]),
    ]:
        assert plain(dec.decode(block, raw=True)) == plain(ref.decode(block, raw=True)) == expected


def test_a_cached_block_is_not_answered_after_the_table_was_emptied_by_a_size_update() -> None:
    enc = hpack.Encoder()
    _, dec = coders()
    ref = reference_decoder()
    adding = enc.encode([(b"x-a", b"1")])
    for d in (dec, ref):
        d.decode(adding, raw=True)
        assert plain(d.decode(b"\xbe", raw=True)) == [(b"x-a", b"1")]
    assert _hit(dec, b"\xbe")
    for d in (dec, ref):
        assert d.decode(b"\x20", raw=True) == []    # a block that only sets the table size to 0 (evicts all)
    assert dec.blocks == {} and dec.header_table_size == 0
    for d in (dec, ref):
        with pytest.raises(hpack.InvalidTableIndexError):
            d.decode(b"\xbe", raw=True)
    for d in (dec, ref):                        # the table grows back; 62 names the new entry
        assert d.decode(b"\x3f\xe1\x1f", raw=True) == []    # size update to 4096
        d.decode(hpack.Encoder().encode([(b"x-z", b"26")]), raw=True)
        assert plain(d.decode(b"\xbe", raw=True)) == [(b"x-z", b"26")]


def test_a_cached_block_is_not_answered_after_an_eviction() -> None:
    """A small table: adding an entry evicts the oldest; a cached block naming the evicted index must fail."""
    enc = hpack.Encoder()
    enc.header_table_size = 80                 # room for two entries of 32 + 7 bytes
    _, dec = coders()
    ref = reference_decoder()
    blocks = [enc.encode([(b"x-a", b"1")]), enc.encode([(b"x-b", b"2")]), b"\xbe\xbf"]
    for d in (dec, ref):
        assert [plain(d.decode(b, raw=True)) for b in blocks] == [[(b"x-a", b"1")], [(b"x-b", b"2")],
                                                                   [(b"x-b", b"2"), (b"x-a", b"1")]]
    assert _hit(dec, b"\xbe\xbf")
    evicting = enc.encode([(b"x-c", b"3")])
    for d in (dec, ref):
        assert plain(d.decode(evicting, raw=True)) == [(b"x-c", b"3")]
        assert plain(d.decode(b"\xbe\xbf", raw=True)) == [(b"x-c", b"3"), (b"x-b", b"2")]
        with pytest.raises(hpack.InvalidTableIndexError):
            d.decode(b"\xc0", raw=True)        # 64: x-a, evicted


def test_a_cached_block_obeys_a_lowered_header_list_size() -> None:
    _, dec = coders()
    block = b"\x82\x84\x87"                  # GET / https: static indexes
    expected = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https")]
    assert plain(dec.decode(block, raw=True)) == expected and _hit(dec, block)
    size = sum(32 + len(n) + len(v) for n, v in expected)
    dec.max_header_list_size = size            # still fits
    assert plain(dec.decode(block, raw=True)) == expected
    dec.max_header_list_size = size - 1
    with pytest.raises(hpack.OversizedHeaderListError):
        dec.decode(block, raw=True)


def test_a_cached_block_obeys_a_lowered_allowed_table_size() -> None:
    """Our SETTINGS_HEADER_TABLE_SIZE was lowered and acknowledged but the peer never shrank its table: the next
    block fails, cached or not, as with the reference decoder."""
    enc = hpack.Encoder()
    _, dec = coders()
    ref = reference_decoder()
    adding = enc.encode([(b"x-a", b"1")])
    for d in (dec, ref):
        d.decode(adding, raw=True)
        assert plain(d.decode(b"\xbe", raw=True)) == [(b"x-a", b"1")]
        d.max_allowed_table_size = 0
    assert _hit(dec, b"\xbe")
    for d in (dec, ref):
        with pytest.raises(hpack.InvalidTableSizeError):
            d.decode(b"\xbe", raw=True)


def test_text_decoding_matches_the_reference() -> None:
    enc = hpack.Encoder()
    _, dec = coders()
    ref = reference_decoder()
    for fields in (REQUEST, REQUEST, [(b"x-utf8", "日本語".encode())]):
        block = enc.encode(fields)
        assert dec.decode(block) == ref.decode(block) == [(n.decode(), v.decode()) for n, v in fields]
    with pytest.raises(hpack.HPACKDecodingError):
        dec.decode(hpack.Encoder().encode([(b"x-bin", b"\xff")]))


# -- the repeat cache's bounds


def _neutral_block(i: int, size: int = 0) -> bytes:
    """A block that leaves the table alone: a static index and one literal without indexing, ``size`` bytes
    of value (or a short distinct one)."""
    value = b"%d" % i if not size else (b"%d-" % i).ljust(size, b"v")
    return b"\x82" + b"\x00" + bytes([6]) + b"x-test" + hpack.hpack.encode_integer(len(value), 7) + value


def test_the_documented_bounds() -> None:
    assert (RepeatDecoder.BLOCKS_MAX, RepeatDecoder.BLOCK_MAX_BYTES, RepeatDecoder.BLOCK_MAX_FIELDS) == (8, 256, 32)


def test_at_most_eight_blocks_are_kept_per_connection() -> None:
    _, dec = coders()
    _, other = coders()
    for i in range(100):
        block = _neutral_block(i)
        assert plain(dec.decode(block, raw=True)) == [(b":method", b"GET"), (b"x-test", b"%d" % i)]
        assert block in dec.blocks and 1 <= len(dec.blocks) <= RepeatDecoder.BLOCKS_MAX
        assert plain(dec.decode(block, raw=True)) == [(b":method", b"GET"), (b"x-test", b"%d" % i)]
    assert other.blocks == {}                  # each connection has its own


def test_large_blocks_and_long_lists_are_not_kept() -> None:
    _, dec = coders()
    at_limit = _neutral_block(1, size=RepeatDecoder.BLOCK_MAX_BYTES - 11)
    over = _neutral_block(2, size=RepeatDecoder.BLOCK_MAX_BYTES - 10)
    assert (len(at_limit), len(over)) == (RepeatDecoder.BLOCK_MAX_BYTES, RepeatDecoder.BLOCK_MAX_BYTES + 1)
    for block in (at_limit, over):
        assert [bytes(h[1]) for h in dec.decode(block, raw=True)] == [b"GET", block[11:]]
    assert at_limit in dec.blocks and over not in dec.blocks
    fields32, fields33 = b"\x82" * RepeatDecoder.BLOCK_MAX_FIELDS, b"\x84" * (RepeatDecoder.BLOCK_MAX_FIELDS + 1)
    assert plain(dec.decode(fields32, raw=True)) == [(b":method", b"GET")] * 32
    assert plain(dec.decode(fields33, raw=True)) == [(b":path", b"/")] * 33
    assert fields32 in dec.blocks and fields33 not in dec.blocks


def test_a_block_that_changes_the_table_is_not_kept_and_drops_the_others() -> None:
    _, dec = coders()
    for i in range(3):
        dec.decode(_neutral_block(i), raw=True)
    assert len(dec.blocks) == 3
    indexing = hpack.Encoder().encode([(b"x-new", b"1")])
    assert plain(dec.decode(indexing, raw=True)) == [(b"x-new", b"1")]
    assert dec.blocks == {}
    assert plain(dec.decode(indexing, raw=True)) == [(b"x-new", b"1")] and dec.blocks == {}    # added again
    assert list(dec.header_table.dynamic_entries) == [(b"x-new", b"1"), (b"x-new", b"1")]


def test_install_hpack_keeps_the_connection_limits() -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    conn.decoder.max_header_list_size = 12345
    conn.decoder.max_allowed_table_size = 777
    install_hpack(conn)
    assert isinstance(conn.decoder, RepeatDecoder) and isinstance(conn.encoder, FieldEncoder)
    assert (conn.decoder.max_header_list_size, conn.decoder.max_allowed_table_size) == (12345, 777)
