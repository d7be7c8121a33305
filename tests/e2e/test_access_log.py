"""The access log, through the real binary: JSON fields and values for proxied, 404, 429 and 502 requests,
header capture with redaction, filters, no log when disabled, and reopening the file on SIGUSR1."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
from harness import free_port, wait_until
from obs_util import json_lines, scrape, value

BASE = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.api]
rule = "PathPrefix(`/api`)"
service = "svc"
[routers.dead]
rule = "PathPrefix(`/dead`)"
service = "gone"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
[services.gone.load_balancer]
servers = [{url = "http://127.0.0.1:DEADPORT"}]
"""


def _config(backend_url: str, access_log: str) -> str:
    dead = free_port()
    return BASE.replace("BACKEND", backend_url).replace("DEADPORT", str(dead)) + access_log


def _log_table(path, extra: str = "") -> str:
    return f'\n[access_log]\nenabled = true\npath = "{path}"\nflush_interval = "20ms"\n{extra}\n'


def _has_open(pid, path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            pass
    return False


def _wait_lines(path, n):
    def enough():
        lines = json_lines(path)
        return lines if len(lines) >= n else None

    return wait_until(enough, 10, what=f"{n} access log lines in {path}")


def test_success_line_has_every_field_with_the_right_values(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    b = backends()
    g = gateway(_config(b.url, _log_table(log, 'headers = ["X-Request-Id", "Authorization"]')), workers=2)
    r = httpx.post(g.url + "/api/items?x=1&y=2", content=b"hello", timeout=5,
                   headers={"User-Agent": "obs-test/1.0", "X-Request-Id": "req-42", "Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    (line,) = _wait_lines(log, 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert line["client_ip"] == "127.0.0.1"
    assert line["method"] == "POST" and line["path"] == "/api/items" and line["query"] == "x=1&y=2"
    assert line["host"] == f"127.0.0.1:{g.port}" and line["protocol"] == "HTTP/1.1"
    assert line["status"] == 200 and line["request_bytes"] == 5 and line["response_bytes"] == len(r.content)
    assert line["router"] == "api" and line["service"] == "svc" and line["backend"] == b.url
    assert line["entrypoint"] == "web" and line["worker"] in (0, 1)
    assert line["user_agent"] == "obs-test/1.0"
    assert 0 < line["upstream_ms"] <= line["duration_ms"] < 5000
    assert line["reason"] is None and line["trace_id"] is None
    assert line["headers"] == {"X-Request-Id": "req-42", "Authorization": "***"}
    assert "s3cret" not in log.read_text()


def test_404_and_502_lines_carry_the_gateways_reason(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    g = gateway(_config(backends().url, _log_table(log)), workers=2)
    assert httpx.get(g.url + "/nowhere", timeout=5).status_code == 404
    assert httpx.get(g.url + "/dead/x", timeout=5).status_code == 502
    lines = {entry["status"]: entry for entry in _wait_lines(log, 2)}
    assert lines[404]["router"] is None and lines[404]["reason"] == "No route matched"
    assert lines[404]["upstream_ms"] is None and lines[404]["backend"] is None
    assert lines[502]["router"] == "dead" and lines[502]["service"] == "gone"
    assert "cannot connect to backend" in lines[502]["reason"]


def test_429_line_from_a_rate_limit(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    cfg = _config(backends().url, _log_table(log)).replace(
        'service = "svc"\n', 'service = "svc"\nmiddlewares = ["limit"]\n', 1)
    cfg += '\n[middlewares.limit]\ntype = "rate-limit"\nrate = 1\nburst = 1\n'
    g = gateway(cfg, workers=2)
    statuses = [httpx.get(g.url + "/api/x", timeout=5).status_code for _ in range(3)]
    assert 429 in statuses
    lines = _wait_lines(log, 3)
    limited = [entry for entry in lines if entry["status"] == 429]
    assert limited and limited[0]["router"] == "api" and limited[0]["reason"]
    wait_until(lambda: value(scrape(g), "a3s_gateway_rate_limited_requests_total", router="api") == len(limited),
               what="rate-limited requests counted")


def test_filters_fields_and_dropped_query(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    extra = ('drop_query = true\nexclude_fields = ["user_agent", "client_ip"]\n'
             '[access_log.filters]\nstatus = ["400-499"]\n')
    g = gateway(_config(backends().url, _log_table(log, extra)), workers=1)
    assert httpx.get(g.url + "/api/ok?secret=1", timeout=5).status_code == 200
    assert httpx.get(g.url + "/missing?secret=2", timeout=5).status_code == 404
    (line,) = _wait_lines(log, 1)
    assert line["status"] == 404 and line["query"] is None
    assert "user_agent" not in line and "client_ip" not in line
    assert "secret" not in log.read_text()


def test_common_log_format(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    g = gateway(_config(backends().url, _log_table(log, 'format = "common"')), workers=1)
    assert httpx.get(g.url + "/api/clf?q=1", timeout=5).status_code == 200
    wait_until(lambda: log.exists() and log.read_text().strip(), what="a CLF line")
    line = log.read_text().strip()
    clf = r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /api/clf\?q=1 HTTP/1\.1" 200 \d+'
    assert re.fullmatch(clf, line), line


def test_disabled_access_log_writes_nothing(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    g = gateway(_config(backends().url, f'\n[access_log]\nenabled = false\npath = "{log}"\n'), workers=2)
    for _ in range(5):
        assert httpx.get(g.url + "/api/x", timeout=5).status_code == 200
    wait_until(lambda: value(scrape(g), "a3s_gateway_requests_total") == 5, what="requests counted")
    assert not log.exists()
    assert '"status":200' not in g.logs()
    assert value(scrape(g), "a3s_gateway_access_log_lines_total") == 0


def test_sigusr1_reopens_the_file_after_rotation(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    g = gateway(_config(backends().url, _log_table(log)), workers=2)
    # new connections: both workers serve (and open their file) before the rotation
    for _ in range(10):
        assert httpx.get(g.url + "/api/before", headers={"Connection": "close"}, timeout=5).status_code == 200
    _wait_lines(log, 10)
    log.rename(rotated)
    g.signal(signal.SIGUSR1)
    pids = g.worker_pids()
    wait_until(lambda: all(_has_open(pid, log) for pid in pids), what="every worker reopened the access log")
    for _ in range(10):
        assert httpx.get(g.url + "/api/after", headers={"Connection": "close"}, timeout=5).status_code == 200
    after = _wait_lines(log, 10)
    assert {e["path"] for e in after} == {"/api/after"}
    assert {e["path"] for e in json_lines(rotated)} == {"/api/before"}
    assert g.proc.poll() is None and len(g.worker_pids()) == 2
    wait_until(lambda: value(scrape(g), "a3s_gateway_access_log_lines_total") == 20, what="lines counted")
