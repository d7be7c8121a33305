"""``packaging/kubernetes/deployment.yaml`` through the real binary: its ConfigMap's config runs (against the fake
API server standing in for the cluster), the admin token comes from a Secret, and its probe command answers
healthy with that token and unhealthy without it, as the kubelet would see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml
from harness import BINARY, Gateway, wait_until
from kube_apiserver import FakeApiServer

DEPLOYMENT = Path(__file__).resolve().parents[2] / "packaging" / "kubernetes" / "deployment.yaml"
TOKEN = "probe-token-for-tests"


def manifests() -> tuple[str, dict[str, Any]]:
    """The ConfigMap's ``gateway.toml`` and the gateway container."""
    docs = [d for d in yaml.safe_load_all(DEPLOYMENT.read_text()) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["gateway.toml"]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    return config, pod["containers"][0]


def probe(container: dict[str, Any], admin_port: int, token: str | None) -> int:
    """The readiness probe's command, run as the kubelet runs it (its python is the one the image installs)."""
    command = [sys.executable if i == 0 else arg.replace("127.0.0.1:9090", f"127.0.0.1:{admin_port}")
               for i, arg in enumerate(container["readinessProbe"]["exec"]["command"])]
    env = {"ADMIN_TOKEN": token} if token is not None else {}
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_the_config_needs_the_admin_token_from_the_secret(tmp_path: Path) -> None:
    config, container = manifests()
    env = {e["name"]: e for e in container["env"]}
    assert env["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "a3s-gateway-admin", "key": "token"}
    assert container["livenessProbe"]["exec"] == container["readinessProbe"]["exec"]
    path = tmp_path / "gateway.toml"
    path.write_text(config)
    base = {k: v for k, v in os.environ.items() if k != "ADMIN_TOKEN"}
    refused, accepted = (subprocess.run([*BINARY, "validate", "--config", str(path)], capture_output=True, text=True,
                                        timeout=60, env={**base, **extra}) for extra in ({}, {"ADMIN_TOKEN": TOKEN}))
    assert refused.returncode != 0 and "admin.token" in refused.stdout + refused.stderr
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_the_shipped_config_runs_and_its_probe_checks_health_with_the_admin_token(tmp_path: Path) -> None:
    config, container = manifests()
    api = FakeApiServer().start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    config = (config.replace("0.0.0.0:8000", "127.0.0.1:{web}").replace("0.0.0.0:9090", "127.0.0.1:{admin}")
              .replace("/var/lib/a3s-gateway/kubernetes", str(tmp_path / "certs"))
              .replace("[providers.kubernetes]\n", f'[providers.kubernetes]\nkubeconfig = "{kubeconfig}"\n'))
    gw = Gateway(config, tmp_path, wait=False, env={"ADMIN_TOKEN": TOKEN})
    try:
        wait_until(lambda: probe(container, gw.admin_port, TOKEN) == 0, timeout=30, what="the probe passes")
        assert probe(container, gw.admin_port, "wrong") != 0
        assert probe(container, gw.admin_port, None) != 0
        assert httpx.get(gw.admin + "/api/gateway/health", timeout=5).status_code == 401
        lease = wait_until(lambda: api.get("Lease", "a3s-gateway", "a3s-gateway"), what="the leader's Lease")
        assert lease["spec"]["holderIdentity"]
    finally:
        gw.stop()
        api.stop()
