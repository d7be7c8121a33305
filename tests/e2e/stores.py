"""Real stores for the provider tests, each its own process on 127.0.0.1, started here and stopped by PID."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from certs import CA
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


class ConsulFake(Daemon):
    """consul_fake.py (Consul's KV API with blocking queries and an ACL token), its data kept in ``workdir``."""

    TOKEN = "a3s-test-token"

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).parent / "consul_fake.py"), "--port", str(self.port), "--data",
                str(self.workdir / "kv.json"), "--token", self.TOKEN]

    def _api(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers={"X-Consul-Token": self.TOKEN})

    def put(self, pairs: dict[str, str]) -> None:
        with self._api() as api:
            for key, value in pairs.items():
                api.put(f"/v1/kv/{key}", content=value.encode()).raise_for_status()

    def delete(self, prefix: str) -> None:
        with self._api() as api:
            api.delete(f"/v1/kv/{prefix}", params={"recurse": "true"}).raise_for_status()

    def reads(self) -> dict[str, int]:
        """``blocking`` queries, recursive ``lists`` and single-``keys`` reads answered so far."""
        with self._api() as api:
            return api.get("/fake/stats").json()

    def provider_toml(self) -> str:
        return (f'[providers.consul]\naddress = "http://127.0.0.1:{self.port}"\ntoken = "{self.TOKEN}"\n'
                'debounce = "50ms"\nmax_backoff = "500ms"\nwait = "5s"\n')


DOCKER = "/usr/bin/docker"      # Debian's docker.io client (the image may carry another one in /usr/local/bin)
IMAGE = "a3s/bb:1"


class Dockerd:
    """A real dockerd (Debian's docker.io) on its own socket and data root under ``workdir``, with no bridge and no
    iptables (only host networking), and a busybox image made offline with ``docker import``. It also listens on
    ``tcp://localhost:<tcp_port>`` with ``--tlsverify``: ``ca`` signed its certificate and ``client``'s."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tcp_port = free_port()
        self.ca = CA(workdir / "tls")
        self.server = self.ca.issue("localhost", file="server")
        self.client = self.ca.issue("gateway", file="client", client=True)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.workdir / "root"), "--exec-root", str(self.workdir / "exec"),
             "-H", f"unix://{self.socket}", "--pidfile", str(self.workdir / "dockerd.pid"), "--iptables=false",
             "--ip6tables=false", "--bridge=none", "--storage-driver=vfs", "--userland-proxy=false",
             "-H", f"tcp://127.0.0.1:{self.tcp_port}", "--tlsverify", "--tlscacert", str(self.ca.path),
             "--tlscert", str(self.server.cert), "--tlskey", str(self.server.key)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.workdir / 'dockerd.log').read_text()[-2000:]}")
            return self.socket.exists() and subprocess.run([DOCKER, "-H", f"unix://{self.socket}", "version"],
                                                           capture_output=True).returncode == 0
        wait_until(ready, 30, interval=0.1, what="dockerd ready")
        self._import_busybox()

    def _import_busybox(self) -> None:
        rootfs = self.workdir / "rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        (rootfs / "www").mkdir(exist_ok=True)
        shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")      # static (busybox-static): no libc inside
        for tool in ("sh", "httpd", "cat", "rm", "touch", "sleep"):
            link = rootfs / "bin" / tool
            if not link.exists():
                link.symlink_to("busybox")
        (rootfs / "www" / "index.html").write_text("hello from a container\n")
        (rootfs / "www" / "ok").write_text("ok\n")
        tar = self.workdir / "bb.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        self.cli("import", "-c", 'CMD ["/bin/sh"]', str(tar), IMAGE)

    def cli(self, *args: str) -> str:
        return subprocess.run([DOCKER, "-H", f"unix://{self.socket}", *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def run(self, name: str, port: int, labels: dict[str, str], health: bool = False) -> str:
        """A busybox httpd on 127.0.0.1:``port`` (host network); with ``health``, healthy while /www/ok exists."""
        checks = ["--health-cmd", "cat /www/ok", "--health-interval", "300ms", "--health-retries", "1",
                  "--health-start-period", "0s"] if health else []
        label_args = [x for k, v in labels.items() for x in ("-l", f"{k}={v}")]
        return self.cli("run", "-d", "--name", name, "--network", "host", *label_args, *checks, IMAGE,
                        "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        ids = self.cli("ps", "-aq").split()
        if ids:
            self.cli("rm", "-f", *ids)
        self.proc.terminate()           # dockerd stops its containerd child too
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # dockerd leaves its network namespace (exec/netns/default) mounted; nothing may stay mounted here
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(self.workdir) + "/")), reverse=True):
            subprocess.run(["umount", mount], check=True)
