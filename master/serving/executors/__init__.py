"""The scale executors, by the ``executor`` kind a revision names: a module each, imported only when a revision
uses it (so the Kubernetes or Docker client is loaded only where it is needed).

To add a kind: a module here with a ``ScaleExecutor`` subclass, and its entry in ``EXECUTORS``
(``kind: "module:Class"``). The kind must also be one of ``shared/config/serving_schema.EXECUTORS``.
"""

from __future__ import annotations

import importlib

from ..executor import ScaleExecutor

EXECUTORS: dict[str, str] = {
    "process": "process:ProcessExecutor",
    "docker": "docker:DockerExecutor",
    "http": "http:HttpExecutor",
    "kubernetes": "kubernetes:KubernetesExecutor",
}


def executor_class(kind: str) -> type[ScaleExecutor] | None:
    """The executor class of ``kind``, or None when this build has none."""
    entry = EXECUTORS.get(kind)
    if entry is None:
        return None
    module, _, name = entry.partition(":")
    cls: type[ScaleExecutor] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return cls
