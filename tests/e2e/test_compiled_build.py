"""Which build a gateway runs, through the real binary with two workers: ``--version`` and
``/api/gateway/health`` name it, and ``A3S_GATEWAY_NO_EXTENSIONS=1`` makes a gateway whose compiled modules are
built serve pure Python (proxying as before)."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
from a3s_gateway.extensions import SWITCH
from harness import BINARY
from support.extensions import expected_build

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.r]
rule = "PathPrefix(`/`)"
service = "s"
[services.s.load_balancer]
servers = [{url = "BACKEND"}]
"""

BUILDS = {"pure": {SWITCH: "1"}, "default": {SWITCH: ""}}


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_version_names_the_build(build: str) -> None:
    env = {**os.environ, **BUILDS[build]}
    r = subprocess.run([*BINARY, "--version"], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.strip().endswith(f", {expected_build(env)}")


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_health_names_the_build_the_workers_proxy_with(build: str, gateway, backends) -> None:
    g = gateway(CONFIG.replace("BACKEND", backends().url), workers=2, env=BUILDS[build])
    assert g.health()["build"] == expected_build({**os.environ, **BUILDS[build]})
    with httpx.Client(base_url=g.url) as client:
        for i in range(8):                     # new connections: both workers accept some
            r = client.get(f"/item/{i}", headers={"Connection": "close"})
            assert r.status_code == 200 and r.json()["path"] == f"/item/{i}"
