"""The walkthrough (docs/getting-started/walkthrough.md) works as written: its ``bash`` blocks run in order in
one shell, in a fresh folder, with the real ``a3s-gateway`` on PATH, after its ``<!-- file: gateway.toml -->``
block is saved where the page says. The page's fixed ports are swapped for free loopback ports; nothing else is
changed. The page polls with bounded loops, so this test never sleeps blindly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started" / "walkthrough.md"
PORTS = ("8080", "8443", "9090", "8001", "8002")


def _pieces() -> tuple[str, str]:
    text = PAGE.read_text()
    config = re.search(r"<!-- file: gateway.toml -->\n```toml\n(.*?)^```", text, re.M | re.S)
    assert config, "the walkthrough has no <!-- file: gateway.toml --> block"
    script = "\n".join(m.group(1) for m in re.finditer(r"^```bash\n(.*?)^```", text, re.M | re.S))
    return config.group(1), script


def _kill_leftovers(folder: Path) -> None:
    for name in ("gateway.pid", "backends.pid"):
        pid_file = folder / name
        if not pid_file.exists():
            continue
        for pid in pid_file.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


@pytest.mark.skipif(not all(Path(p).exists() for p in ("/usr/bin/openssl", "/usr/bin/curl")),
                    reason="the walkthrough needs openssl and curl")
def test_walkthrough_runs_end_to_end_as_written(tmp_path: Path) -> None:
    config, script = _pieces()
    for port in PORTS:
        new = str(free_port())
        config, script = config.replace(port, new), script.replace(port, new)
    folder = tmp_path / "walkthrough"
    folder.mkdir()
    (folder / "gateway.toml").write_text(config)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=180)
    finally:
        _kill_leftovers(folder)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for expected in ("gateway.toml: OK", '"state": "running"', "X-Served-By: a3s-gateway", "backend one",
                     "backend two", '{"error":"No route matched"}', '"method": "GET"', '"reason":"No route matched"',
                     '"router":"app"', 'service="app"', "a3s_gateway_config_generation 2.0"):
        assert expected in out, f"{expected!r} not in the walkthrough's output:\n{out}"
    assert "\n2\n" in out, "the TLS request did not use HTTP/2"
    gateway_pid = int((folder / "gateway.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(gateway_pid, 0)
