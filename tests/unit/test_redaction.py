"""URL passwords are masked wherever text leaves the gateway: ``redact_url`` itself, every log line (the
formatter), error bodies, and the URL check that keeps config URLs in a shape ``redact_url`` always finds."""

from __future__ import annotations

import io
import logging

import pytest
from a3s_gateway.shared import log as gwlog
from a3s_gateway.shared.config import ConfigError, GatewayConfig
from a3s_gateway.shared.config.redact import redact_url, redact_urls
from a3s_gateway.worker import responses


@pytest.mark.parametrize("text,expected", [
    ("http://u:pw@h:80/x", "http://u:***@h:80/x"),
    ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
    ("redis://pw@cache", "redis://***@cache"),                       # a lone userinfo is the password
    ("https://token@api.example", "https://***@api.example"),        # ... or a token
    ("http://u:p@ss@h/", "http://u:***@h/"),                          # the userinfo ends at its last '@'
    ("svc|http://u:pw@h:1 and 'ftp://v:pw2@g'", "svc|http://u:***@h:1 and 'ftp://v:***@g'"),
    ("http://h:80/path@x?q=a@b", "http://h:80/path@x?q=a@b"),         # '@' after the authority is no userinfo
    ("mail a@b.example", "mail a@b.example"),
])
def test_redact_url_masks_every_userinfo_password_in_a_text(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_redact_urls_masks_keys_and_values_of_a_snapshot() -> None:
    snapshot = {"svc|http://u:pw@h:1": {"last_error": "GET http://u:pw@h:1/health failed", "n": 1}}
    assert redact_urls(snapshot) == {"svc|http://u:***@h:1": {"last_error": "GET http://u:***@h:1/health failed",
                                                              "n": 1}}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_every_log_line_masks_url_passwords_fields_and_tracebacks_included(fmt: str) -> None:
    saved = logging.root.handlers[:]
    logger = gwlog.setup("debug", fmt, proc="test")
    stream = io.StringIO()
    logger.handlers[0].setStream(stream)   # type: ignore[attr-defined]
    try:
        try:
            raise OSError("cannot reach http://u:tb-pw@h:1")
        except OSError:
            gwlog.get("t").exception("probe of http://u:msg-pw@h:1 failed",
                                     extra={"fields": {"server": "redis://field-pw@h"}})
        logging.getLogger("asyncio").warning("library says http://u:lib-pw@h")   # through the root logger
    finally:
        logging.root.handlers[:] = saved
        logger.handlers.clear()
    out = stream.getvalue()
    assert "msg-pw" not in out and "field-pw" not in out and "tb-pw" not in out and "lib-pw" not in out
    assert out.count("***@h") >= 4          # the traceback quotes the raising line too


def test_error_bodies_mask_url_passwords() -> None:
    body = responses.error_body(502, "Bad gateway: http://u:pw@h:1 refused", server="redis://pw@h")
    assert b"pw@" not in body and b"u:***@h:1" in body


def test_a_server_url_with_whitespace_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as e:
        GatewayConfig.from_dict({"services": {"s": {"load_balancer": {"servers": [{"url": "http://u:p w@h:1"}]}}}})
    (problem,) = e.value.problems
    assert problem.path == "services.s.load_balancer.servers[0].url"
    assert "must not contain whitespace" in problem.message and "p w" not in problem.message
