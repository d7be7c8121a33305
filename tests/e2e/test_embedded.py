"""The embeddable API (``from a3s_gateway import Gateway, GatewayConfig``) driven from a host asyncio program.

Each scenario runs in a fresh interpreter (``python -c``), as a user's program would: the host process becomes
the master, so it must not be pytest's own process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_program(code: str, tmp_path: Path, **env: str) -> dict:
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(code))
    r = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_embedded_lifecycle_reload_health_metrics_and_cleanup(tmp_path, backends):
    b = backends("embedded")
    out = run_program(
        '''
        import asyncio, json, os, httpx
        from a3s_gateway import Gateway, GatewayConfig, ConfigError, StateError

        PORT = int(os.environ["WEB_PORT"])
        TOML = f"""
        [entrypoints.web]
        address = "127.0.0.1:{PORT}"
        [admin]
        enabled = false
        [routers.one]
        rule = "PathPrefix(`/one`)"
        service = "svc"
        [services.svc.load_balancer]
        servers = [{{url = "{os.environ['BACKEND']}"}}]
        """
        TWO = """
        [routers.two]
        rule = "PathPrefix(`/two`)"
        service = "svc"
        """

        def write(text):
            with open("gateway.toml", "w") as f:
                f.write(text)

        async def main():
            res = {}
            write(TOML)
            cfg = GatewayConfig.from_file("gateway.toml")
            gw = Gateway(cfg, workers=2, log_level="warning")
            res["created"] = gw.state()
            try:
                await gw.reload(cfg)
            except StateError:
                res["reload_before_start"] = "StateError"
            await gw.start()
            res["running"] = gw.state()
            res["is_running"] = gw.is_running()
            try:
                await gw.start()
            except StateError:
                res["double_start"] = "StateError"
            pids = [w["pid"] for w in gw.health()["workers"]]
            res["plane"] = gw.plane().name
            url = f"http://127.0.0.1:{PORT}"
            async with httpx.AsyncClient() as c:
                res["one"] = (await c.get(url + "/one")).status_code
                res["two_before"] = (await c.get(url + "/two")).status_code
                write(TOML + TWO)
                new = GatewayConfig.from_file("gateway.toml")
                await gw.reload(new)
                res["two_after"] = (await c.get(url + "/two")).status_code
                write(TOML.replace('service = "svc"', 'service = "nope"') + TWO)   # break the file
                try:
                    await gw.reload()                                               # re-read it
                except ConfigError as e:
                    res["bad_reload"] = str(e.problems[0])
                res["two_still"] = (await c.get(url + "/two")).status_code
            h = gw.health()
            res["generation"] = h["generation"]
            res["last_reload_ok"] = h["last_reload"]["ok"]
            res["metrics"] = gw.metrics()
            res["config_has_two"] = "two" in gw.config().routers
            await gw.shutdown()
            res["stopped"] = gw.state()
            await gw.shutdown()           # harmless
            try:
                await gw.reload(new)
            except StateError:
                res["reload_after_stop"] = "StateError"
            res["workers_gone"] = all(not os.path.exists(f"/proc/{p}") or
                                      open(f"/proc/{p}/stat").read().split()[2] == "Z" for p in pids)
            res["segments_left"] = [f for f in os.listdir("/dev/shm") if f.startswith(res["plane"].lstrip("/") + ".")]
            print(json.dumps(res))

        asyncio.run(main())
    ''',
        tmp_path,
        WEB_PORT=str(free_port()),
        BACKEND=b.url,
    )
    assert out["created"] == "created"
    assert out["reload_before_start"] == "StateError"
    assert out["running"] == "running" and out["is_running"] is True
    assert out["double_start"] == "StateError"
    assert (out["one"], out["two_before"], out["two_after"], out["two_still"]) == (200, 404, 200, 200)
    assert "unknown service 'nope'" in out["bad_reload"]
    assert out["generation"] == 2 and out["last_reload_ok"] is False
    assert out["metrics"]["config_reloads_total"] == 2 and out["metrics"]["config_reloads_failed_total"] == 1
    assert out["config_has_two"] is True
    assert out["stopped"] == "stopped" and out["reload_after_stop"] == "StateError"
    assert out["workers_gone"] is True
    assert out["segments_left"] == []


def test_start_refuses_outside_the_main_thread(tmp_path):
    out = run_program(
        """
        import asyncio, json, threading
        from a3s_gateway import Gateway, GatewayConfig, StateError
        res = {}
        def in_thread():
            async def go():
                gw = Gateway(GatewayConfig.default(), workers=1)
                try:
                    await gw.start()
                except StateError as e:
                    res["error"] = str(e)
            asyncio.run(go())
        t = threading.Thread(target=in_thread); t.start(); t.join()
        print(json.dumps(res))
    """,
        tmp_path,
    )
    assert "main thread" in out["error"]


def test_readme_library_example_runs_as_written(tmp_path, backends):
    readme = (ROOT / "docs" / "library.md").read_text()
    match = re.search(r"<!-- library-example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "docs/library.md has no library example"
    b = backends("readme")
    port, admin = free_port(), free_port()
    (tmp_path / "gateway.toml").write_text(f"""
[entrypoints.web]
address = "127.0.0.1:{port}"
[admin]
address = "127.0.0.1:{admin}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "app"
[services.app.load_balancer]
servers = [{{url = "{b.url}"}}]
""")
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    import httpx
    from harness import wait_until

    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/x").status_code == 200, 30, what="example serving"
        )
    finally:
        proc.send_signal(2)  # Ctrl+C, as the example says
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "State: running" in out
