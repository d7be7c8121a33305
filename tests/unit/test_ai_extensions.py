"""Unit tests of the AI extensions' pure parts: detectors, normalization, priority parsing, the token windows."""

from __future__ import annotations

import orjson
from a3s_gateway.shared.plane import Plane, PlaneLayout
from a3s_gateway.worker.middlewares._support import anthropic
from a3s_gateway.worker.middlewares.channel_webhook import normalize
from a3s_gateway.worker.middlewares.priority import parse_priority
from a3s_gateway.worker.middlewares.privacy_router import detect, iban_ok, luhn


def test_luhn_and_iban_checks() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")


def test_detectors_find_kinds() -> None:
    kinds = {h[2] for h in detect("a@b.io 123-45-6789 4111-1111-1111-1111 AKIAABCDEFGHIJKLMNOP")}
    assert kinds == {"email", "ssn", "card", "secret"}
    assert detect("order 4111 1111 1111 1112, hash 3f786850e387550fdab836ed7e6dc881de23001b") == []


def test_priority_parsing_follows_the_spec() -> None:
    assert [parse_priority(t) for t in ("Critical", "besteffort", "best-effort", "3", " 1", "9")] == [
        0, 4, 4, 3, None, None]


def test_normalize_defaults_missing_fields() -> None:
    msg = normalize("slack", {"event": {"ts": "17.5"}})
    assert (msg["id"], msg["timestamp"], msg["sender_name"], msg["content"]) == ("17.5", 17000, None, "")
    assert normalize("wecom", {"MsgId": 5})["id"] == ""


def test_token_charge_is_all_or_nothing_and_settle_replaces_it() -> None:
    layout = PlaneLayout(max_workers=4, max_backends=8, max_routers=8, max_services=8, ratelimit_entries=16,
                         max_breakers=8, sticky_entries=16, max_limiters=8, token_entries=16)
    master = Plane.create(layout, tag="aicharge")
    try:
        master.set_worker(0, 1)
        master.set_worker(1, 2)
        w0, w1 = Plane.attach(master.name, 0), Plane.attach(master.name, 1)
        a, b, win, t = b"k|user:a", b"k|global", 60.0, 1000.0
        assert w0.token_charge([(a, win, 100), (b, win, 1000)], 90, t)[:2] == (-1, [0, 0])
        assert w1.token_charge([(a, win, 100), (b, win, 1000)], 30, t)[:2] == (-1, [90, 90])   # 90 < 100: admitted
        refused, used, per = w1.token_charge([(b, win, 1000), (a, win, 100)], 1, t)   # a is full: nothing charged
        assert (refused, used, sum(per)) == (1, [120, 120], 120)
        assert (w0.token_usage(a, win, t)[0], w0.token_usage(b, win, t)[0]) == (120, 120)
        w0.token_settle(a, win, 90, t, 10, t + 20)                                # the real usage was 10
        assert w1.token_usage(a, win, t + 20)[0] == 40
        w1.token_settle(a, win, 30, t, 0, t + 20)                                 # failed: refunded
        assert w0.token_usage(a, win, t + 20)[0] == 10
        w0.close()
        w1.close()
    finally:
        master.close()
        master.unlink()


def test_anthropic_events_translate_whatever_the_read_boundaries() -> None:
    events = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c",'
              b'"usage":{"input_tokens":7}}}\n\nevent: content_block_delta\ndata: {"type":"content_block_delta",'
              b'"delta":{"type":"text_delta","text":"Hi"}}\n\ndata: {"type":"message_delta","delta":'
              b'{"stop_reason":"max_tokens"},"usage":{"output_tokens":3}}\n\ndata: {"type":"message_stop"}\n\n')
    whole = anthropic.EventStream(None)
    expected = whole.feed(events) + whole.finish()
    split = anthropic.EventStream(None)
    assert b"".join(split.feed(events[i:i + 1]) for i in range(len(events))) + split.finish() == expected
    chunks = [orjson.loads(line[6:]) for line in expected.split(b"\n\n") if line.startswith(b"data: {")]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hi", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert expected.endswith(b"data: [DONE]\n\n") and chunks[0]["id"] == "m"


def test_token_window_slides_and_counts_all_columns() -> None:
    layout = PlaneLayout(max_workers=4, max_backends=8, max_routers=8, max_services=8, ratelimit_entries=16,
                         max_breakers=8, sticky_entries=16, max_limiters=8, token_entries=16)
    master = Plane.create(layout, tag="aitest")
    try:
        master.set_worker(0, 1)
        master.set_worker(1, 2)
        w0, w1 = Plane.attach(master.name, 0), Plane.attach(master.name, 1)
        key, win = b"k|user:a", 4.0
        base = 1000.0                        # a sub-window boundary (sub-window = 1 s)
        w0.token_record(key, win, 30, base + 0.1)
        w1.token_record(key, win, 20, base + 2.1)
        assert w0.token_usage(key, win, base + 2.2)[0] == 50
        used, per = w1.token_usage(key, win, base + 4.5)     # the first 30 are half out of the window
        assert used == 30 * 0.5 + 20
        assert w1.token_usage(key, win, base + 5.01)[0] == 20
        assert w0.token_usage(key, win, base + 7.01)[0] == 0
        assert w0.token_usage(b"other", win, base)[0] == 0
        w0.close()
        w1.close()
    finally:
        master.close()
        master.unlink()
