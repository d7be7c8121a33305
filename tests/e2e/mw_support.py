"""Helpers shared by the middleware end-to-end tests (test_mw_*.py): helper processes and assertions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from harness import free_port, port_open, wait_until

HERE = Path(__file__).parent


class Process:
    """A helper server script of this folder (``authserver.py``...) on a free port, stopped by ``stop()``."""

    def __init__(self, script: str, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, str(HERE / script), "--port", str(self.port), *args])
        wait_until(lambda: port_open(self.port), what=f"{script} on {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def echoed(r: httpx.Response) -> dict[str, Any]:
    """The request as the echo backend saw it (asserting it got there)."""
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def assert_error(r: httpx.Response, status: int, body: dict[str, Any], **headers: str) -> None:
    """An exact JSON error reply: status, body, and the given headers (``www_authenticate=`` style names)."""
    assert (r.status_code, r.json()) == (status, body), r.text
    assert r.headers["content-type"] == "application/json"
    for name, value in headers.items():
        assert r.headers[name.replace("_", "-")] == value
