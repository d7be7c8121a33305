"""The command line as a new user meets it: ``--help``, JSON configs, ``--admin``, and the start-up log that says
where the gateway really listens."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from harness import BINARY, Gateway, free_port, port_open, wait_until

JSON_CONFIG = {
    "entrypoints": {"web": {"address": "127.0.0.1:{web}"}},
    "admin": {"address": "127.0.0.1:{admin}"},
    "routers": {"all": {"rule": "PathPrefix(`/`)", "service": "whoami@internal"}},
}
WHOAMI = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:%d"
[routers.all]
rule = "PathPrefix(`/`)"
service = "whoami@internal"
"""


def test_help_lists_the_validate_and_status_subcommands() -> None:
    r = subprocess.run([*BINARY, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "a3s-gateway validate [--config FILE] [MANIFEST.yaml ...]" in r.stdout and "a3s-gateway status" in r.stdout
    assert "--admin ADDR|off" in r.stdout


def test_json_config_is_parsed_as_json_and_serves(tmp_path: Path) -> None:
    g = Gateway(json.dumps(JSON_CONFIG), tmp_path, suffix=".json")
    try:
        assert httpx.get(g.url + "/hello").json()["path"] == "/hello"
    finally:
        assert g.stop() == 0


def test_invalid_json_config_is_reported_as_json_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.json"
    bad.write_text('{\n  "routers": {,}\n}\n')
    r = subprocess.run([*BINARY, "validate", "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "invalid JSON: Expecting property name enclosed in double quotes (at line 2, column 15)" in r.stderr


def test_admin_flag_moves_the_admin_api_off_the_configured_address(tmp_path: Path) -> None:
    configured, moved = free_port(), free_port()
    g = Gateway(WHOAMI % configured, tmp_path, admin=moved, extra_args=["--admin", f"127.0.0.1:{moved}"])
    try:
        assert g.health()["state"] == "running"       # the harness reads health on the moved port
        assert not port_open(configured)
    finally:
        assert g.stop() == 0


def test_admin_off_serves_traffic_without_an_admin_api(tmp_path: Path) -> None:
    configured = free_port()
    g = Gateway(WHOAMI % configured, tmp_path, wait=False, extra_args=["--admin", "off"])
    try:
        wait_until(lambda: "gateway running" in g.logs(), 20, what="gateway running")
        assert httpx.get(g.url + "/x").status_code == 200
        assert not port_open(configured)
        assert "admin API on" not in g.logs()
    finally:
        g.proc.send_signal(signal.SIGTERM)
        assert g.proc.wait(30) == 0


@pytest.mark.parametrize("taken_by, expected", [
    ("admin", ("cannot bind admin API on 127.0.0.1:{port}", "--admin ADDR")),
    ("web", ("entrypoint 'web': cannot bind 127.0.0.1:{port}", "--listen ADDR")),
])
def test_start_on_a_taken_port_fails_naming_the_flag_that_moves_it(tmp_path: Path, taken_by: str,
                                                                   expected: tuple[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web, admin = (free_port(), port) if taken_by == "admin" else (port, free_port())
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(WHOAMI.replace("{web}", str(web)) % admin)
        r = subprocess.run([*BINARY, "--config", str(cfg), "--workers", "1"], capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 1
    assert all(part.format(port=port) in r.stderr for part in expected), r.stderr


def test_start_log_names_the_addresses_listened_on_once_workers_accept(tmp_path: Path) -> None:
    """The embedded default config moved by ``--listen`` and ``--admin``: the log shows the real addresses and
    never the default's 8080, and the line comes only once both workers accept."""
    web, admin = free_port(), free_port()
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*BINARY, "--workers", "2", "--log-format", "text", "--listen", f"127.0.0.1:{web}",
                                 "--admin", f"127.0.0.1:{admin}"], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            line = wait_until(lambda: next((ln for ln in log.read_text().splitlines() if "gateway running" in ln),
                                           None), 20, what="gateway running")
            workers = {httpx.get(f"http://127.0.0.1:{web}/", headers={"Connection": "close"}).json()["worker"]["pid"]
                       for _ in range(40)}
            assert len(workers) == 2      # both workers were accepting when the line was written
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    assert f"web on http://127.0.0.1:{web}" in line and f"admin API on http://127.0.0.1:{admin}" in line, line
    assert "8080" not in log.read_text()
