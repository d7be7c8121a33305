"""Structured logging for master and workers: one JSON object per line (default) or key=value text.

Every line carries ``ts``, ``level``, ``proc`` (``master`` or ``worker-<slot>``), ``msg`` and any extra fields
passed as ``log.info("msg", extra={"fields": {...}})``. Both processes write to the same stderr, so the lines of
a whole gateway interleave but each stays whole (one ``write`` per line).

Invariant: no line shows a URL's password. Every formatted line, fields and tracebacks included, passes through
``redact_url`` (``scheme://user:***@``), so a call site that logs a server URL or an exception naming one cannot
leak it. ``setup`` gives the root logger the same handler, so library loggers (asyncio, aiohttp) are covered too.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

from .config.redact import redact_url

LOGGER_NAME = "a3s_gateway"


class _Formatter(logging.Formatter):
    def __init__(self, proc: str, fmt: str) -> None:
        super().__init__()
        self.proc = proc
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "proc": self.proc,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.json:
            return redact_url(orjson.dumps(fields, default=str).decode())
        return redact_url(" ".join(f"{k}={_quote(v)}" for k, v in fields.items()))


def _quote(value: object) -> str:
    text = str(value)
    return orjson.dumps(text).decode() if (not text or any(c in text for c in ' "=\n')) else text


def setup(level: str = "info", fmt: str = "json", proc: str = "master") -> logging.Logger:
    """Configure the gateway's logger for this process (idempotent: replaces earlier handlers). Other libraries'
    warnings go through the same (redacting) handler via the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(proc, fmt))
    logging.root.handlers[:] = [handler]
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def get(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
