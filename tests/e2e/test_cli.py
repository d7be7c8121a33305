"""The command line as a new user meets it: ``--help``, JSON configs, ``--admin``, and the start-up log that says
where the gateway really listens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
from harness import BINARY, Gateway

JSON_CONFIG = {
    "entrypoints": {"web": {"address": "127.0.0.1:{web}"}},
    "admin": {"address": "127.0.0.1:{admin}"},
    "routers": {"all": {"rule": "PathPrefix(`/`)", "service": "whoami@internal"}},
}
WHOAMI = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:%d"
[routers.all]
rule = "PathPrefix(`/`)"
service = "whoami@internal"
"""


def test_help_lists_the_validate_and_status_subcommands() -> None:
    r = subprocess.run([*BINARY, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "a3s-gateway validate --config FILE" in r.stdout and "a3s-gateway status" in r.stdout


def test_json_config_is_parsed_as_json_and_serves(tmp_path: Path) -> None:
    g = Gateway(json.dumps(JSON_CONFIG), tmp_path, suffix=".json")
    try:
        assert httpx.get(g.url + "/hello").json()["path"] == "/hello"
    finally:
        assert g.stop() == 0


def test_invalid_json_config_is_reported_as_json_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.json"
    bad.write_text('{\n  "routers": {,}\n}\n')
    r = subprocess.run([*BINARY, "validate", "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "invalid JSON: Expecting property name enclosed in double quotes (at line 2, column 15)" in r.stderr
