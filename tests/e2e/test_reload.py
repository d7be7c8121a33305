"""Reloads through the real binary: zero-drop under load, entrypoint rebinding, invalid edits, file watching."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import httpx
import psutil
import pytest
from harness import free_port, port_open, wait_until

BASE = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.one]
rule = "PathPrefix(`/one`)"
service = "svc"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
"""

TWO = """
[routers.two]
rule = "PathPrefix(`/two`)"
service = "svc"
"""

EXTRA = """
[entrypoints.extra]
address = "127.0.0.1:{extra}"
"""


class KeepAliveLoad:
    """``n`` persistent HTTP/1.1 connections in one asyncio thread, each sending GET /one back to back.
    Counts answers, non-200 answers, connections the server closed or reset, and reconnects."""

    def __init__(self, port: int, n: int, path: str = "/one") -> None:
        self.port, self.n, self.path = port, n, path
        self.ok = 0
        self.bad: list[str] = []
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> KeepAliveLoad:  # noqa: PYI034
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    async def _main(self) -> None:
        await asyncio.gather(*(self._conn() for _ in range(self.n)))

    async def _conn(self) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: load\r\n\r\n".encode()
        while not self.stop.is_set():
            self.connections += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError as e:
                self.bad.append(f"connect: {e!r}")
                await asyncio.sleep(0.05)
                continue
            try:
                while not self.stop.is_set():
                    writer.write(request)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    await asyncio.wait_for(reader.readexactly(length), 10)
                    if status == 200:
                        self.ok += 1
                    else:
                        self.bad.append(f"status {status}")
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                if not self.stop.is_set():
                    self.bad.append(f"connection lost: {e!r}")
            finally:
                writer.close()


def metric(g, name: str) -> float:
    with urllib.request.urlopen(g.admin + "/api/gateway/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(name)


def test_twenty_reloads_under_keepalive_load_drop_nothing(gateway, backends):
    b = backends()
    one, two = BASE.replace("BACKEND", b.url), BASE.replace("BACKEND", b.url) + TWO
    g = gateway(one, workers=2)
    with KeepAliveLoad(g.port, 50) as load:
        wait_until(lambda: load.ok > 200, 20, what="load flowing")
        for i in range(20):
            before = load.ok
            gen = g.reload(two if i % 2 == 0 else one)
            assert gen == i + 2, g.health()["last_reload"]
            wait_until(lambda b=before: load.ok > b + 50, 20, what="traffic after reload")
            status = httpx.get(g.url + "/two").status_code
            assert status == (200 if i % 2 == 0 else 404)
    print(f"\n20 reloads under 50 keep-alive connections: {load.ok} requests, {len(load.bad)} failed, "
          f"{load.connections} connections opened")
    assert load.bad == []
    assert load.connections == 50            # no connection was closed by a reload
    assert g.health()["last_reload"]["ok"] is True


def test_a_sighup_while_starting_is_kept_and_reloads_once_running(gateway, backends):
    """A SIGHUP that comes while workers are still booting (some may already serve) is not dropped: the reload
    runs once the start has finished, from the file as it is then."""
    b = backends()
    g = gateway(BASE.replace("BACKEND", b.url), workers=2, wait=False)
    master = psutil.Process(g.proc.pid)
    frozen = wait_until(lambda: master.children(), 20, what="a worker spawned")[0]
    frozen.suspend()                    # a worker boot takes far longer than this poll: it is not ready yet
    try:
        wait_until(lambda: _state(g) == "starting", 20, what="the admin API up while starting")
        g.write_config(BASE.replace("BACKEND", b.url) + TWO)
        g.signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP reload deferred" in g.logs(), 10, what="the reload deferred")
        assert _state(g) == "starting"
    finally:
        frozen.resume()
    wait_until(lambda: g.health()["generation"] == 2, 30, what="the deferred reload")
    assert httpx.get(g.url + "/two").status_code == 200
    assert g.health()["last_reload"]["ok"] is True


def _state(g) -> str | None:
    try:
        return g.health_any()["state"]  # 503 until running
    except OSError:                     # the admin API is not listening yet
        return None


def test_streaming_response_and_keepalive_survive_reloads(gateway, backends):
    b = backends()
    chunked = BASE.replace("BACKEND", b.url) + TWO.replace("/two", "/chunked")
    g = gateway(chunked, workers=2)
    keep = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    keep.request("GET", "/one")
    assert keep.getresponse().read()
    # A large chunked download is read partly, the config reloads twice, then it is read to the end.
    size = 40 * 1024 * 1024
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)
    conn.request("GET", f"/chunked/{size}")
    resp = conn.getresponse()
    got = len(resp.read(1 << 20))
    g.reload(chunked + TWO)
    g.reload(chunked)
    got += len(resp.read())
    assert got == size
    keep.request("GET", "/one")                 # the keep-alive connection from before the reloads
    assert keep.getresponse().status == 200


def test_reload_adds_and_removes_an_entrypoint_without_touching_the_others(gateway, backends):
    b = backends()
    extra = free_port()
    g = gateway(BASE.replace("BACKEND", b.url), workers=2, extra=extra)
    keep = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    keep.request("GET", "/one")
    assert keep.getresponse().read()
    assert not port_open(extra)
    g.reload(BASE.replace("BACKEND", b.url) + EXTRA)
    assert g.health()["last_reload"]["ok"] is True, g.health()["last_reload"]
    workers = {httpx.get(f"http://127.0.0.1:{extra}/one", headers={"Connection": "close"}).status_code
               for _ in range(20)}
    assert workers == {200}
    # a slow request on the entrypoint that is about to go away finishes after the removal
    slow = http.client.HTTPConnection("127.0.0.1", extra, timeout=10)
    slow.request("GET", "/one/../delay/1")
    g.reload(BASE.replace("BACKEND", b.url))
    assert g.health()["last_reload"]["ok"] is True
    wait_until(lambda: not port_open(extra), 5, what="removed entrypoint closed")
    resp = slow.getresponse()
    assert resp.status in (200, 404) and resp.read() is not None
    keep.request("GET", "/one")
    assert keep.getresponse().status == 200      # unchanged entrypoint: same connection still served
    # moving an entrypoint to another address
    moved = free_port()
    g.reload(BASE.replace("BACKEND", b.url).replace("{web}", str(g.port)) + EXTRA.replace("{extra}", str(moved)))
    assert httpx.get(f"http://127.0.0.1:{moved}/one").status_code == 200
    g.reload(BASE.replace("BACKEND", b.url) + EXTRA.replace("{extra}", str(extra)))
    assert httpx.get(f"http://127.0.0.1:{extra}/one").status_code == 200
    wait_until(lambda: not port_open(moved), 5, what="old address closed")


def test_reload_binding_a_busy_port_is_rejected_and_changes_nothing(gateway, backends):
    b = backends()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        g = gateway(BASE.replace("BACKEND", b.url), workers=2, extra=port)
        g.reload(BASE.replace("BACKEND", b.url) + EXTRA + TWO)
        last = g.health()["last_reload"]
        assert last["ok"] is False and "cannot bind" in " ".join(last["errors"])
        assert httpx.get(g.url + "/two").status_code == 404
        assert httpx.get(g.url + "/one").status_code == 200
    finally:
        busy.close()


@pytest.mark.parametrize("bad", [
    "[routers.one\nrule = ",                                                   # TOML syntax error
    BASE.replace('service = "svc"', 'service = "nope"'),                       # unknown service
    BASE + '[middlewares.rl]\ntype = "rate-limit"\nrate = -5\n',               # bad middleware parameter
])
def test_invalid_edit_changes_nothing_and_is_reported(gateway, backends, bad):
    b = backends()
    g = gateway(BASE.replace("BACKEND", b.url) + TWO, workers=2)
    gen = g.health()["generation"]
    g.reload(bad.replace("BACKEND", b.url))
    health = g.health()
    assert health["last_reload"]["ok"] is False and health["last_reload"]["errors"]
    assert health["generation"] == gen and health["state"] == "running"
    assert metric(g, "a3s_gateway_config_reloads_failed_total") == 1
    assert "reload rejected" in g.logs()
    assert httpx.get(g.url + "/two").status_code == 200


WATCHED = BASE + """
[providers.file]
watch = true
directory = "conf.d"
"""

CONF_D_ROUTER = """
[routers.fromdir]
rule = "PathPrefix(`/fromdir`)"
service = "svc"
"""


def test_watch_reloads_editor_style_writes_and_conf_d_changes(gateway, backends, tmp_path):
    b = backends()
    (tmp_path / "conf.d").mkdir()
    # a relative --config (the last --config wins) with the gateway's working directory in tmp_path
    g = gateway(WATCHED.replace("BACKEND", b.url), workers=2, extra_args=["--config", "gateway.toml"])
    assert httpx.get(g.url + "/two").status_code == 404
    g.write_config(WATCHED.replace("BACKEND", b.url) + TWO)       # temp file + rename, like an editor
    wait_until(lambda: httpx.get(g.url + "/two").status_code == 200, 10, what="watched edit applied")
    # two quick writes: the second (final) state is the one applied
    gen = g.health()["generation"]
    g.write_config(WATCHED.replace("BACKEND", b.url) + TWO.replace("/two", "/three"))
    g.config_path.write_text(WATCHED.replace("BACKEND", b.url).replace("{web}", str(g.port))
                             .replace("{admin}", str(g.admin_port)) + TWO.replace("/two", "/four"))
    wait_until(lambda: httpx.get(g.url + "/four").status_code == 200, 10, what="final write applied")
    wait_until(lambda: g.health()["generation"] > gen, 5)
    assert httpx.get(g.url + "/three").status_code == 404
    # conf.d: a new file adds a router; a duplicate name is an error naming both files
    (tmp_path / "conf.d" / "extra.toml").write_text(CONF_D_ROUTER)
    wait_until(lambda: httpx.get(g.url + "/fromdir").status_code == 200, 10, what="conf.d file applied")
    (tmp_path / "conf.d" / "dup.toml").write_text(CONF_D_ROUTER)
    wait_until(lambda: g.health()["last_reload"]["ok"] is False, 10, what="duplicate rejected")
    errors = " ".join(g.health()["last_reload"]["errors"])
    assert "extra.toml" in errors and "dup.toml" in errors
    assert httpx.get(g.url + "/fromdir").status_code == 200
    (tmp_path / "conf.d" / "dup.toml").unlink()
    (tmp_path / "conf.d" / "extra.toml").unlink()
    wait_until(lambda: httpx.get(g.url + "/fromdir").status_code == 404, 10, what="conf.d removal applied")
    assert g.health()["last_reload"]["ok"] is True


def test_watch_off_ignores_file_changes(gateway, backends):
    b = backends()
    g = gateway(BASE.replace("BACKEND", b.url) + "[providers.file]\nwatch = false\n", workers=1)
    gen = g.health()["generation"]
    g.write_config(BASE.replace("BACKEND", b.url) + TWO + "[providers.file]\nwatch = false\n")
    time.sleep(1.0)  # a negative check: give a (wrong) watcher time to act
    assert g.health()["generation"] == gen


def _channel_has_unread_message(pid: int) -> bool:
    """Whether a message (the new generation) waits in one of worker ``pid``'s unix sockets (``ss``' Recv-Q)."""
    out = subprocess.run(["ss", "-x", "-p"], capture_output=True, text=True, check=True).stdout
    return any(f"pid={pid}," in line and int(line.split()[2]) > 0 for line in out.splitlines()[1:])


def test_requests_queued_on_an_entrypoint_being_removed_are_answered_not_reset(gateway, backends):
    """A connection the kernel accepted (and whose request it holds) before a reload removed its entrypoint is
    served: the workers find the new generation and the unread connections at the same time (they were stopped
    meanwhile), in either order."""
    b = backends()
    extra = free_port()
    g = gateway(BASE.replace("BACKEND", b.url) + EXTRA, workers=2, extra=extra)
    pids = g.worker_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        clients = []
        for _ in range(8):      # new connections: spread over both workers' sockets, none accepted yet
            c = socket.create_connection(("127.0.0.1", extra), timeout=10)
            c.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            clients.append(c)
        g.write_config(BASE.replace("BACKEND", b.url))
        g.signal(signal.SIGHUP)
        wait_until(lambda: all(_channel_has_unread_message(pid) for pid in pids), 10, what="generation sent")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    wait_until(lambda: not port_open(extra), 10, what="removed entrypoint closed")
    assert g.health()["last_reload"]["ok"] is True
    for c in clients:
        with c:
            head = c.recv(65536)        # ConnectionResetError here is the bug
            assert head.startswith(b"HTTP/1.1 200 ") or head.startswith(b"HTTP/1.1 404 "), head


RELAY = """
[entrypoints.relay]
address = "127.0.0.1:{relay}"
protocol = "tcp"
[routers.relay]
rule = "HostSNI(`*`)"
service = "raw"
entrypoints = ["relay"]
[services.raw.load_balancer]
servers = [{url = "tcp://HOSTPORT"}]
"""


def test_reload_removing_a_tcp_entrypoint_with_a_live_relay_is_applied(gateway, backends):
    b = backends()
    relay = free_port()
    g = gateway(BASE.replace("BACKEND", b.url) + RELAY.replace("HOSTPORT", f"127.0.0.1:{b.port}"), workers=2,
                relay=relay)
    with socket.create_connection(("127.0.0.1", relay), timeout=10) as c:
        c.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
        g.reload(BASE.replace("BACKEND", b.url))
        assert g.health()["last_reload"]["ok"] is True, g.health()["last_reload"]
    wait_until(lambda: not port_open(relay), 10, what="removed TCP entrypoint closed")
