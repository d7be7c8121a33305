"""Real stores for the provider tests, each its own process on 127.0.0.1, started here and stopped by PID."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness import free_port, port_open, wait_until


class Daemon:
    """A store process; ``start`` may be called again after ``stop`` (same port, same data directory).

    Every store offers ``put`` (key → value), ``delete`` and ``provider_toml`` (its gateway settings), so one
    test runs against each."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "daemon.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        wait_until(lambda: port_open(self.port), 20, what=f"{self.command()[0]} on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        wait_until(lambda: not port_open(self.port), what=f"port {self.port} closed")


class RedisServer(Daemon):
    """redis-server; ``config_allowed=False`` renames CONFIG away, as managed Redis refuses it."""

    def __init__(self, workdir: Path, config_allowed: bool = True) -> None:
        super().__init__(workdir)
        self.config_allowed = config_allowed

    def command(self) -> list[str]:
        extra = [] if self.config_allowed else ["--rename-command", "CONFIG", ""]
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "yes", "--dir", str(self.workdir), *extra]

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def put(self, pairs: dict[str, str]) -> None:
        self.cli("MSET", *(x for kv in pairs.items() for x in kv))

    def delete(self, prefix: str) -> None:
        """Every key under ``prefix``."""
        self.cli("EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end", "0",
                 prefix + "*")

    def provider_toml(self) -> str:
        return (f'[providers.redis]\nurl = "redis://127.0.0.1:{self.port}/0"\ndebounce = "50ms"\n'
                'max_backoff = "500ms"\npoll_interval = "300ms"\n')


class Etcd(Daemon):
    """etcd-server (Debian's etcd 3.4) with its data in ``workdir``; ``etcdctl`` speaks to it."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.peer = free_port()

    def command(self) -> list[str]:
        client, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer}"
        return ["etcd", "--name", "t", "--data-dir", str(self.workdir / "data"), "--listen-client-urls", client,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"t={peer}"]

    def ctl(self, *args: str) -> str:
        return subprocess.run(["etcdctl", f"--endpoints=127.0.0.1:{self.port}", *args], check=True,
                              capture_output=True, text=True,
                              env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}).stdout.strip()

    def put(self, pairs: dict[str, str]) -> None:
        for key, value in pairs.items():
            self.ctl("put", key, value)

    def delete(self, prefix: str) -> None:
        """Every key under ``prefix``."""
        self.ctl("del", "--prefix", prefix)

    def provider_toml(self) -> str:
        return f'[providers.etcd]\nendpoint = "127.0.0.1:{self.port}"\ndebounce = "50ms"\nmax_backoff = "500ms"\n'

    def revision(self) -> int:
        return json.loads(self.ctl("endpoint", "status", "-w", "json"))[0]["Status"]["header"]["revision"]
