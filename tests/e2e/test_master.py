"""The master: worker supervision, signals (SIGHUP reload, SIGTERM graceful stop), CLI behaviour."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading

import httpx
from harness import BINARY, free_port, port_open, wait_until

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

WITH_TWO = (
    BASE
    + """
[routers.two]
rule = "PathPrefix(`/two`)"
service = "svc"
"""
)


def test_kill_9_worker_under_load_is_replaced_and_traffic_continues(gateway, backends):
    g = gateway(BASE.replace("BACKEND", backends().url), workers=2)
    victim = g.worker_pids()[0]
    errors: list[str] = []
    ok = [0]
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                r = httpx.get(g.url + "/one", timeout=5)
                if r.status_code == 200:
                    ok[0] += 1
            except httpx.HTTPError as e:
                errors.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: ok[0] > 20, what="traffic flowing")
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(g.worker_pids()) == 2 and victim not in g.worker_pids(), what="worker replaced")
    served_after = ok[0]
    wait_until(lambda: ok[0] > served_after + 50, what="traffic after replacement")
    stop.set()
    for t in threads:
        t.join()
    # Only requests in flight in the killed worker may fail; new connections are always served.
    assert len(errors) <= 4, errors
    slots = {w["slot"]: w for w in g.health()["workers"]}
    assert sum(w["restarts"] for w in slots.values()) == 1


def test_sighup_valid_change_adds_route_and_keeps_keepalive_connection(gateway, backends):
    b = backends()
    g = gateway(BASE.replace("BACKEND", b.url), workers=2)
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=5)
    conn.request("GET", "/one")
    assert conn.getresponse().read() and True
    sock_before = conn.sock
    assert httpx.get(g.url + "/two").status_code == 404
    gen = g.reload(WITH_TWO.replace("BACKEND", b.url))
    assert gen == 2 and g.health()["last_reload"]["ok"] is True
    assert httpx.get(g.url + "/two").status_code == 200
    conn.request("GET", "/two")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read()
    assert conn.sock is sock_before  # the same keep-alive connection, now on the new generation
    conn.close()


def test_sighup_invalid_file_keeps_old_routes_and_reports(gateway, backends):
    b = backends()
    g = gateway(BASE.replace("BACKEND", b.url), workers=2)
    g.reload(BASE.replace("BACKEND", b.url).replace('service = "svc"', 'service = "nope"'))
    health = g.health()
    assert health["last_reload"]["ok"] is False
    assert health["generation"] == 1
    assert any("routers.one.service: unknown service 'nope'" in e for e in health["last_reload"]["errors"])
    assert "unknown service 'nope'" in g.logs()
    assert httpx.get(g.url + "/one").status_code == 200


def test_sigterm_lets_in_flight_request_finish_then_exits_0(gateway, backends):
    b = backends()
    g = gateway(BASE.replace("BACKEND", b.url).replace("PathPrefix(`/one`)", "PathPrefix(`/`)"), workers=2)
    result = {}

    def slow():
        result["r"] = httpx.get(g.url + "/delay/1.5", timeout=10)

    t = threading.Thread(target=slow)
    t.start()
    wait_until(
        lambda: httpx.get(b.url + "/stats").json()["inflight"] == 1, what="slow request at the backend"
    )
    g.signal(signal.SIGTERM)
    t.join()
    assert result["r"].status_code == 200
    assert g.proc.wait(15) == 0
    assert not port_open(g.port)


def test_sigterm_serves_a_request_still_unread_on_an_idle_keep_alive_connection(gateway, backends):
    """A keep-alive connection whose next request sits unread in the kernel when the drain starts is not
    idle: it is answered, then closed (closing it at once would reset the client). The worker is stopped while
    the master's stop message and then the request arrive, so both are waiting when it resumes."""
    b = backends()
    g = gateway(BASE.replace("BACKEND", b.url), workers=1)
    request = f"GET /one HTTP/1.1\r\nHost: 127.0.0.1:{g.port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", g.port), timeout=10) as s:
        s.sendall(request)
        assert read_response(s).startswith(b"HTTP/1.1 200")
        (worker,) = g.worker_pids()
        os.kill(worker, signal.SIGSTOP)
        try:
            g.signal(signal.SIGTERM)
            wait_until(lambda: "workers asked to stop" in g.logs(), what="the master's stop message")
            s.sendall(request)
        finally:
            os.kill(worker, signal.SIGCONT)
        answer = read_response(s)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert s.recv(1) == b""                      # then closed, cleanly (a reset would raise)
    assert g.proc.wait(15) == 0


def read_response(s: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length body from ``s`` (b"" if it closed first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_validate_lists_every_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("""
[entrypoints.web]
address = "127.0.0.1:notaport"
[routers.api]
rule = "PathPrefx(`/x`)"
service = "api-svc"
middlewares = ["nope"]
[services.api-service.load_balancer]
strategy = "round-robbin"
servers = []
[middlewares.m]
type = "rate-limt"
""")
    r = subprocess.run([*BINARY, "validate", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    err = r.stderr
    for needle in (
        "entrypoints.web.address",
        "routers.api.rule",
        "did you mean 'PathPrefix'",
        "routers.api.service: unknown service 'api-svc' (did you mean 'api-service'?)",
        "routers.api.middlewares",
        "services.api-service.load_balancer.strategy",
        "services.api-service.load_balancer.servers",
        "middlewares.m.type",
    ):
        assert needle in err, needle
    good = tmp_path / "good.toml"
    good.write_text(
        BASE.replace("BACKEND", "http://127.0.0.1:1").replace("{web}", "1").replace("{admin}", "2")
    )
    r = subprocess.run([*BINARY, "validate", "--config", str(good)], capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout and r.stdout.count("\n") == 1


def test_default_config_serves_whoami(tmp_path):
    if port_open(8080) or port_open(9090):
        import pytest

        pytest.skip("127.0.0.1:8080 or :9090 is busy on this machine")
    proc = subprocess.Popen(
        [*BINARY, "--workers", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(
            lambda: httpx.get("http://127.0.0.1:9090/api/gateway/health").json()["state"] == "running",
            what="default gateway",
        )
        body = httpx.get("http://127.0.0.1:8080/anything", headers={"X-Hi": "1"}).json()
        assert body["path"] == "/anything" and body["headers"]["X-Hi"] == ["1"]
        assert body["worker"]["slot"] in (0, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_listen_flag_overrides_web_and_survives_reload(gateway, backends):
    b = backends()
    port = free_port()
    g = gateway(BASE.replace("BACKEND", b.url), extra_args=["--listen", f"127.0.0.1:{port}"])
    assert httpx.get(f"http://127.0.0.1:{port}/one").status_code == 200
    assert not port_open(g.port)
    g.reload(WITH_TWO.replace("BACKEND", b.url))
    assert g.health()["last_reload"]["ok"] is True
    assert httpx.get(f"http://127.0.0.1:{port}/two").status_code == 200


def test_version_flag():
    r = subprocess.run([*BINARY, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("a3s-gateway ")


def test_unknown_middleware_type_in_bad_config_fails_start(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        '[entrypoints.web]\naddress = "127.0.0.1:1"\n[routers.x]\nrule = "Path(`/`)"\nservice = "missing"\n'
    )
    r = subprocess.run([*BINARY, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "routers.x.service: unknown service 'missing'" in r.stderr
    assert sys.executable


def test_user_flag_drops_privileges_of_master_and_workers(gateway, backends):
    import pwd

    import pytest

    if os.getuid() != 0:
        pytest.skip("dropping privileges needs root")
    nobody = pwd.getpwnam("nobody")
    try:
        subprocess.run([sys.executable, "-c", "import a3s_gateway.worker"], user="nobody", check=True,
                       capture_output=True, timeout=30)
    except (subprocess.CalledProcessError, PermissionError) as e:
        pytest.skip(f"user 'nobody' cannot run this Python (installed under a private home?): {e}")
    g = gateway(BASE.replace("BACKEND", backends().url), workers=2, extra_args=["--user", "nobody"])
    assert httpx.get(g.url + "/one").status_code == 200

    def uid(pid: int) -> int:
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith("Uid:")).split()[1])

    assert uid(g.proc.pid) == nobody.pw_uid
    assert all(uid(p) == nobody.pw_uid for p in g.worker_pids())
