"""What one Kubernetes object contributes to the config, kept apart so a bad object can be left out alone.

Names the provider generates end in ``@kubernetes`` (``@gateway`` for the Gateway API; Traefik's convention),
so they never collide with the files' names and the admin API shows where they came from; a name is built from
the object's namespace and name, so two objects never produce the same router.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PROVIDER = "kubernetes"
PROVIDERS = (PROVIDER, "gateway", "crd")      # every suffix the provider generates (Ingress, Gateway API, our CRD)


def safe(*parts: object) -> str:
    """A name component: lowercase letters, digits and '-' (hosts and paths become dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(str(p) for p in parts).lower()).strip("-") or "root"


@dataclass
class Part:
    source: str                                   # "Ingress default/web": how errors name the object
    routers: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    middlewares: dict[str, dict[str, Any]] = field(default_factory=dict)
    certificates: list[tuple[bytes, bytes]] = field(default_factory=list)   # PEM (chain, key)
    errors: list[str] = field(default_factory=list)   # problems that left something out; the rest serves
    status: dict[str, Any] | None = None          # the status the object should have (Gateway API kinds)
    paths: dict[str, str] = field(default_factory=dict)   # "middlewares.<generated name>" → its place, "spec"
