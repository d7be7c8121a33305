"""The locust harness end to end: origin + gateway (2 workers) + locust headless for 10 s, plain-proxy and
large-body profile, few users. Zero failures and a complete report (CSV, HTML, summary)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

# Only look for locust: importing it here would let gevent monkey-patch this process (threads become
# greenlets), which hangs every later test that runs a server thread (the gRPC tests did).
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed (it is in the 'test' extra: pip install -e .[test])", allow_module_level=True)

RUNNER = Path(__file__).resolve().parents[2] / "loadtest" / "locust_run.py"


def test_locust_smoke_profile_runs_10s_with_zero_failures_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, str(RUNNER), "--profile", "smoke", "--users", "4", "--spawn-rate", "4",
         "--run-time", "10", "--workers", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    logs = {
        name: (out / name).read_text()[-3000:]
        for name in ("gateway.log", "locust.log")
        if (out / name).exists()
    }
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{logs}"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["gateway_exit"] == 0 and summary["locust_exit"] == 0
    total = summary["total"]
    assert total["requests"] > 0 and total["failures"] == 0, summary
    assert total["req_per_s"] > 0 and total["p99_ms"] >= total["p50_ms"] > 0
    names = {e["name"] for e in summary["requests"]}
    assert {"/plain/hello", "/large/echo [POST large body]", "/large/blob [GET large body]"} <= names, names
    assert all(e["requests"] > 0 for e in summary["requests"]), summary["requests"]

    stats = list(csv.DictReader((out / "locust_stats.csv").open()))
    assert stats[-1]["Name"] == "Aggregated" and int(stats[-1]["Request Count"]) == total["requests"]
    assert list(csv.DictReader((out / "locust_failures.csv").open())) == []
    html = (out / "report.html").read_text()
    assert len(html) > 10_000 and "/plain/hello" in html
    assert "req/s" in (out / "summary.txt").read_text()
