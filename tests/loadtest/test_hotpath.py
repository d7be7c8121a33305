"""The in-memory hot-path tools (loadtest/hotpath.py, hotpath_h2.py) still run as scripts from any folder, with
their in-memory worker imported from tests/support/inmemory.py, and print their one-line figure."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.inmemory import ROOT


@pytest.mark.parametrize(("script", "line"), [
    ("hotpath.py", r"^plain: [0-9.]+ µs of Python per proxied request \(300 requests\)$"),
    ("hotpath_h2.py", r"^plain h2 -m10: [0-9.]+ µs of Python per proxied stream \(300 streams\)$"),
])
def test_hotpath_script_runs_outside_the_repo_and_prints_its_figure(tmp_path: Path, script: str, line: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "loadtest" / script), "plain", "--requests", "300"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.match(line, done.stdout.strip()), done.stdout


class _Origin(http.server.BaseHTTPRequestHandler):
    """The reference origin's /small: 100 bytes, keep-alive."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"x" * 100)

    def log_message(self, *args: object) -> None:
        pass


def test_hotpath_over_sockets_serves_a_client_process_through_the_real_pool() -> None:
    """``--sockets``: the worker listens on loopback and its upstream pool connects to the origin (``--origin``;
    by default the reference origin on 127.0.0.1:9001), here a threaded stand-in on a free port."""
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    origin.daemon_threads = True
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        done = subprocess.run([sys.executable, str(ROOT / "loadtest" / "hotpath.py"), "plain", "--sockets",
                               "--origin", f"127.0.0.1:{origin.server_port}", "--requests", "200"],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        origin.shutdown()
        origin.server_close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.match(r"^plain over sockets: [0-9.]+ µs wall per request, client included \(200 requests\)$",
                    done.stdout.strip()), done.stdout
