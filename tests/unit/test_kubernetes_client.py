"""Which cluster the Kubernetes provider talks to: settings, then $KUBECONFIG, then the in-cluster service account."""

from __future__ import annotations

import json
from pathlib import Path

from a3s_gateway.master.providers.kubernetes.client import kube_config


def _kubeconfig(tmp: Path, name: str, server: str) -> Path:
    path = tmp / name
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "ns1"}}]}))
    return path


def test_in_cluster_config_uses_the_service_account_token_ca_and_namespace(tmp_path, monkeypatch):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("secret-token")
    (sa / "namespace").write_text("gateway-system")
    (sa / "ca.crt").write_text("")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)          # lightkube reads these from os.environ itself
    config = kube_config({"service_account_dir": str(sa)}, env).get()
    assert config.cluster.server == "https://10.0.0.1:443"
    assert config.user.token == "secret-token"
    assert config.namespace == "gateway-system"
    assert config.cluster.certificate_auth.endswith("ca.crt")


def test_kubeconfig_setting_wins_over_the_environment_and_in_cluster(tmp_path):
    chosen = _kubeconfig(tmp_path, "chosen", "https://chosen:6443")
    env_file = _kubeconfig(tmp_path, "env", "https://env:6443")
    env = {"KUBECONFIG": str(env_file), "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert kube_config({"kubeconfig": str(chosen)}, env).get().cluster.server == "https://chosen:6443"
    assert kube_config({}, env).get().cluster.server == "https://env:6443"
