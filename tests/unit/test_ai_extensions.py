"""Unit tests of the AI extensions' pure parts: detectors, normalization, priority parsing, the token windows."""

from __future__ import annotations

from a3s_gateway.shared.plane import Plane, PlaneLayout
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
