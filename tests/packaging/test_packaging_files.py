"""Fast checks of the packaging sources (no package is built): the unit, the default config, sd_notify."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from a3s_gateway.master import sd_notify

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = PACKAGING / "systemd" / "a3s-gateway.service"
DEFAULT_CONFIG = PACKAGING / "gateway.toml"
GATEWAY = shutil.which("a3s-gateway", path=os.path.dirname(sys.executable)) or shutil.which("a3s-gateway")


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (packaging/install-build-deps installs it)")
    if GATEWAY is None:
        pytest.skip("no a3s-gateway executable to point the unit's ExecStart at")
    # verify fails when the ExecStart binary is missing on the host: point it at this checkout's executable.
    unit = tmp_path / "a3s-gateway.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/a3s-gateway", GATEWAY))
    r = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], check=False, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "a3s-gateway.service" not in r.stderr, r.stderr


def test_unit_has_the_settings_operators_rely_on() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "User=a3s-gateway",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line
    assert re.search(r"^ReadWritePaths=.*/var/lib/a3s-gateway", text, re.MULTILINE)
    assert int(re.search(r"^LimitNOFILE=(\d+)$", text, re.MULTILINE)[1]) >= 65536
    graceful = float(re.search(r"--graceful-timeout (\d+)", text)[1])
    assert float(re.search(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)[1]) > graceful


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [GATEWAY] if GATEWAY else [sys.executable, "-m", "a3s_gateway.master.cli"]
    return subprocess.run(
        [*cmd, "validate", "--config", str(path)], check=False, capture_output=True, text=True, timeout=60
    )


def test_default_config_is_valid_with_web_on_80_and_admin_on_loopback(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_CONFIG, tmp_path / "gateway.toml")
    r = _validate(tmp_path / "gateway.toml")
    assert r.returncode == 0, r.stderr
    text = DEFAULT_CONFIG.read_text()
    assert re.search(r'^address = "0\.0\.0\.0:80"$', text, re.MULTILINE)
    assert re.search(r'^\[admin\]\naddress = "127\.0\.0\.1:9090"$', text, re.MULTILINE)


def test_default_config_example_router_is_valid_when_uncommented(tmp_path: Path) -> None:
    lines = DEFAULT_CONFIG.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# [routers.app]"))
    example = [re.sub(r"^# ?", "", line) for line in lines[start:]]
    (tmp_path / "gateway.toml").write_text("\n".join(lines[:start] + example) + "\n")
    r = _validate(tmp_path / "gateway.toml")
    assert r.returncode == 0, r.stderr
    assert "1 router" in r.stdout, r.stdout


def test_sd_notify_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.notify("READY=1") is False
    assert sd_notify.enabled() is False


def test_sd_notify_sends_one_datagram_to_a_path_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sd_notify.notify("READY=1\nSTATUS=serving") is True
        assert server.recv(4096) == b"READY=1\nSTATUS=serving"


def test_sd_notify_reaches_an_abstract_socket_and_stamps_reloading(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"a3s-gateway-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(b"\0" + name.encode())
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.notify("RELOADING=1") is True
        lines = server.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    assert re.fullmatch(r"MONOTONIC_USEC=\d+", lines[1])


def test_sd_notify_returns_false_when_the_socket_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing"))
    assert sd_notify.notify("STOPPING=1") is False
