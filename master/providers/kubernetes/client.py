"""Which cluster to talk to, and how: lightkube's config from the provider settings and the environment.

Order (the first that applies): ``providers.kubernetes.kubeconfig`` (the CLI's ``--kubeconfig`` fills it), then
``$KUBECONFIG``, then in-cluster (the service account's token, CA and namespace, when
``KUBERNETES_SERVICE_HOST`` is set), then ``~/.kube/config``. ``context`` picks a kubeconfig context.
"""

from __future__ import annotations

import os
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SERVICE_ACCOUNT


def kube_config(settings: dict[str, Any], environ: os._Environ[str] | dict[str, str] = os.environ) -> KubeConfig:
    path = settings.get("kubeconfig") or environ.get("KUBECONFIG")
    if path:
        return KubeConfig.from_file(path.split(os.pathsep)[0])
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return KubeConfig.from_service_account(settings.get("service_account_dir") or SERVICE_ACCOUNT)
    return KubeConfig.from_file(os.path.expanduser("~/.kube/config"))


def make_client(settings: dict[str, Any]) -> AsyncClient:
    config = kube_config(settings).get(settings.get("context"))
    return AsyncClient(config, field_manager="a3s-gateway")
