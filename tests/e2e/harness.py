"""End-to-end harness: the real ``a3s-gateway`` binary and real backend processes on 127.0.0.1.

``Gateway(config_text)`` writes the config to a temp folder, starts the binary with N workers, waits until the
admin API reports ``running`` and stops it (checking the exit status and that no worker is left) on ``stop()``.
Ports are picked free by binding port 0. Waits poll a condition with a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BINARY = [sys.executable, "-c", "from a3s_gateway.master.cli import main; raise SystemExit(main())"]


def one_service(
    *urls: str, strategy: str = "round-robin", weights: list[int] | None = None, extra: str = "",
    middlewares: tuple[str, ...] = (),
) -> str:
    """A config (harness placeholders for the ports) with one catch-all router to one service ``svc``.

    ``extra`` is appended (more tables, e.g. the middlewares named in ``middlewares``)."""
    servers = ", ".join(
        f'{{url = "{u}"' + (f", weight = {weights[i]}" if weights else "") + "}" for i, u in enumerate(urls)
    )
    return f"""
[entrypoints.web]
address = "127.0.0.1:{{web}}"
[admin]
address = "127.0.0.1:{{admin}}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "svc"
middlewares = {list(middlewares)!r}
[services.svc.load_balancer]
strategy = "{strategy}"
servers = [{servers}]
{extra}
"""


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same one twice in a test run.

    Two bind-to-0 calls in a row may get the same port from the kernel, which once gave a gateway's admin
    API the web entrypoint's port; remembering what was handed out rules that out.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(
    cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 — polled conditions fail until they hold
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Backend:
    """tests/e2e/backend.py in its own process."""

    def __init__(self, name: str = "backend", port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "backend.py"), "--port", str(self.port), "--name", name]
        )
        wait_until(lambda: port_open(self.port), what=f"backend {name} on {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Gateway:
    """The real binary with a config written from text; ``{web}`` and ``{admin}`` in the text become ports."""

    def __init__(
        self,
        config: str,
        tmp: Path,
        workers: int = 2,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        suffix: str = ".toml",
        wait: bool = True,
        **ports: int,
    ) -> None:
        self.port = ports.pop("web", None) or free_port()
        self.admin_port = ports.pop("admin", None) or free_port()
        self.ports = ports
        self.tmp = tmp
        self.config_path = tmp / f"gateway{suffix}"
        self.write_config(config)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.log_path = tmp / f"gateway-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*BINARY, "--config", str(self.config_path), "--workers", str(workers), *(extra_args or [])],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=tmp,
        )
        if wait:
            self.wait_running()

    def write_config(self, text: str) -> None:
        text = text.replace("{web}", str(self.port)).replace("{admin}", str(self.admin_port))
        for k, v in self.ports.items():
            text = text.replace("{" + k + "}", str(v))
        tmp_path = self.config_path.with_suffix(".tmp")
        tmp_path.write_text(text)
        tmp_path.replace(self.config_path)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.admin + "/api/gateway/health", timeout=2) as r:
            return json.loads(r.read())

    def health_any(self) -> dict[str, Any]:
        try:
            return self.health()
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def wait_running(self, timeout: float = 20.0) -> None:
        def running() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")
            return self.health()["state"] == "running"

        wait_until(running, timeout, what="gateway running")

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.health()["workers"] if w["alive"]]

    def logs(self) -> str:
        if not self._log.closed:     # still readable after stop()
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def reload(self, config: str | None = None) -> int:
        """Rewrite the config (optional), SIGHUP, and wait until the reload was answered; returns the generation."""
        before = self.health()["last_reload"]["at"]
        if config is not None:
            self.write_config(config)
        self.signal(signal.SIGHUP)
        wait_until(lambda: self.health()["last_reload"]["at"] != before, what="reload answered")
        return self.health()["generation"]

    def stop(self, timeout: float = 30.0) -> int:
        pids = []
        if self.proc.poll() is None:
            try:
                pids = [w["pid"] for w in self.health_any().get("workers", [])]
            except OSError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        for pid in pids:
            wait_until(lambda pid=pid: not _alive(pid), 5.0, what=f"worker {pid} gone")
        return self.proc.returncode


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of an exited child still "exists"; read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
