"""Server URLs with credentials (``http://user:password@host``) through the real binary: the password never shows
in the master's or the workers' log lines, the access log, error bodies, the admin API's health and metrics, or
the status tool, while requests still work. The gateway does not turn a server URL's userinfo into an
``Authorization`` header for proxied requests (only aiohttp-based probes, which read it from the URL, send it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
from harness import BINARY, Gateway, free_port, wait_until

PASSWORDS = ["app-SECRET-pw", "dead-SECRET-pw", "seed-SECRET-pw"]

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[access_log]
enabled = true
path = "ACCESS"
flush_interval = "10ms"
[routers.app]
rule = "PathPrefix(`/app`)"
service = "app"
[routers.dead]
rule = "PathPrefix(`/dead`)"
service = "dead"
[services.app.load_balancer]
servers = [{url = "http://alice:app-SECRET-pw@127.0.0.1:BACKEND"}]
[services.dead.load_balancer]
servers = [{url = "http://bob:dead-SECRET-pw@127.0.0.1:DEADPORT"}]
health_check = {path = "/health", interval = "100ms", timeout = "1s", unhealthy_threshold = 1}
[providers.discovery]
seeds = [{url = "http://carol:seed-SECRET-pw@127.0.0.1:DEADPORT"}]
poll_interval_secs = 1
"""


def test_server_passwords_never_reach_logs_bodies_or_the_admin_api(tmp_path: Path, backends) -> None:
    b = backends()
    access = tmp_path / "access.log"
    config = (CONFIG.replace("BACKEND", str(b.port)).replace("DEADPORT", str(free_port()))
              .replace("ACCESS", str(access)))
    g = Gateway(config, tmp_path, env={"A3S_LOG_LEVEL": "debug"})
    shown: list[str] = []
    try:
        ok = httpx.get(g.url + "/app/x", timeout=5)
        assert ok.status_code == 200, ok.text
        assert "authorization" not in ok.json()["headers"]      # userinfo is not forwarded as credentials
        dead = httpx.get(g.url + "/dead/x", timeout=5)
        assert dead.status_code in (502, 503), dead.text
        shown.append(dead.text)
        # the health check took the dead backend out and discovery failed to reach its seed: both are reported
        health = wait_until(lambda: (h := g.health()) and h["control"]["discovery"]["seeds"][0]["last_error"]
                            and any(not s["healthy"] for s in h["control"]["health_checks"].values()) and h,
                            what="failed probe and discovery poll")
        shown.append(json.dumps(health))
        shown.append(httpx.get(g.admin + "/api/gateway/metrics", timeout=5).text)
        status = subprocess.run([*BINARY, "status", "--pid", str(g.proc.pid), "--json"], capture_output=True,
                                text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        shown.append(status.stdout + status.stderr)
        wait_until(lambda: access.exists() and len(access.read_text().splitlines()) >= 2, what="access log lines")
    finally:
        g.stop()
    shown += [g.log_path.read_text(), access.read_text()]
    everything = "\n".join(shown)
    assert "alice:***@127.0.0.1" in everything and "bob:***@127.0.0.1" in everything   # shown, but masked
    assert "carol:***@127.0.0.1" in everything
    for password in PASSWORDS:
        assert password not in everything, f"{password!r} shown:\n{everything}"
