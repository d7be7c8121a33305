"""The command line as a new user meets it: ``--help``, JSON configs, ``--admin``, and the start-up log that says
where the gateway really listens."""

from __future__ import annotations

import subprocess

from harness import BINARY

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
