"""Faults outside the request path, through the real binary: /dev/shm too small at start-up, and the access log's
disk full while traffic goes on.

/dev/shm: posix_ipc (``shm_open``) always uses /dev/shm, so the test runs the binary in a private mount
namespace (``unshare -m``) over a tiny tmpfs mounted on /dev/shm: the real binary, the real path, no test-only
switch in the code. That needs root (CAP_SYS_ADMIN); elsewhere the test is skipped with the reason.

Disk full: ``/dev/full`` as the access log path (every write is ENOSPC; runs anywhere), and, as root, a 64 KiB
tmpfs that fills up part-way through the traffic.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from harness import BINARY, free_port, one_service, wait_until
from obs_util import scrape, value

_IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _can_mount() -> str | None:
    """None when a private tmpfs can be mounted here, else why not."""
    if not _IS_ROOT:
        return "needs root (mounting a tmpfs in a private mount namespace)"
    if shutil.which("unshare") is None:
        return "needs unshare(1) (util-linux)"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /dev/shm"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}"
    return None


_NO_MOUNT = _can_mount()
needs_mount = pytest.mark.skipif(_NO_MOUNT is not None, reason=_NO_MOUNT or "")


# ------------------------------------------------------------------------------------------ /dev/shm too small

@needs_mount
@pytest.mark.parametrize("size", ["256k", "6m"])  # nothing fits / the first segments fit, a later one does not
def test_dev_shm_too_small_is_a_clear_start_up_error(tmp_path: Path, size: str) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[entrypoints.web]
address = "127.0.0.1:{free_port()}"
[admin]
address = "127.0.0.1:{free_port()}"
""")
    cmd = " ".join(f"'{a}'" for a in [*BINARY, "--config", str(cfg), "--workers", "2"])
    # inside the namespace: the tiny /dev/shm, the gateway, then what it left in /dev/shm
    script = (f"mount -t tmpfs -o size={size} tmpfs /dev/shm && {cmd}; echo \"rc=$?\"; "
              "echo left:; ls -A /dev/shm")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "rc=1" in proc.stdout, out
    assert "/dev/shm is too small" in out and "No space left on device" in out, out
    assert "cannot reserve" in out and "MiB" in out, out           # names the segment size
    assert "the whole plane needs" in out, out                     # and the plane's total
    assert "Traceback" not in out, out
    left = proc.stdout.split("left:", 1)[1].split()
    assert left == [], f"segments left behind in /dev/shm: {left}"


# ------------------------------------------------------------------------------------- access log disk full

def _log_config(backend_url: str, path: str) -> str:
    return one_service(backend_url, extra=f"""
[access_log]
enabled = true
path = "{path}"
flush_interval = "20ms"
""")


def _metric(g, name: str) -> float:  # type: ignore[no-untyped-def]
    return value(scrape(g), name)


def _serve(g, n: int) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(timeout=5) as c:
        for i in range(n):
            r = c.get(f"{g.url}/disk-full/{i}")
            assert r.status_code == 200, r.text


def test_access_log_on_dev_full_still_serves_and_counts_drops(gateway, backends) -> None:
    b = backends()
    g = gateway(_log_config(b.url, "/dev/full"))
    pids = g.worker_pids()
    _serve(g, 60)
    wait_until(lambda: _metric(g, "a3s_gateway_access_log_dropped_total") == 60, 10,
               what="60 access log lines counted as dropped")
    assert _metric(g, "a3s_gateway_access_log_lines_total") == 60
    assert g.worker_pids() == pids                      # no worker died
    logs = g.logs()
    assert "cannot write access log /dev/full: No space left on device" in logs
    assert logs.count("cannot write access log") <= len(pids)   # once per worker, not once per line
    assert "Traceback" not in logs
    _serve(g, 5)                                         # and it keeps serving
    assert g.stop() == 0


@needs_mount
def test_access_log_disk_filling_up_still_serves_and_accounts_every_line(gateway, backends, tmp_path) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(logs_dir)], check=True)
    try:
        b = backends()
        path = logs_dir / "access.log"
        g = gateway(_log_config(b.url, str(path)))
        pids = g.worker_pids()
        total = 600                                      # ~250 bytes a line: the 64 KiB fill part-way through
        _serve(g, total)

        def accounted() -> bool:
            written = path.read_bytes().count(b"\n")
            return written + _metric(g, "a3s_gateway_access_log_dropped_total") == total

        wait_until(accounted, 10, what="every line either in the file or counted as dropped")
        written = path.read_bytes().count(b"\n")
        assert 0 < written < total
        assert _metric(g, "a3s_gateway_access_log_lines_total") == total
        assert g.worker_pids() == pids
        assert "No space left on device" in g.logs() and "Traceback" not in g.logs()
        assert g.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(logs_dir)], check=False)
