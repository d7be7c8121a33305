"""Our CRD objects checked from YAML files, without a cluster (``a3s-gateway validate route.yaml``).

The objects go through what the provider does with them in a cluster: the same translation (``crd.py``), the
same validator on the config they join, Middleware objects first and every Route with the good Middlewares. Every
problem is reported (not only the first few), named by file, document, kind and namespace/name, then the key path
inside the object (``spec.routers.api.rule``), so it can be found in the file.

Documents of other kinds (the CRDs themselves, Deployments, Ingresses…) are counted and skipped: an Ingress
needs the cluster's Services and EndpointSlices to mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ....shared.config import GatewayConfig
from ....shared.errors import ConfigError
from .crd import RouteTranslator
from .manifests import GROUP, VERSION
from .part import Part
from .provider import CONTEXT, empty, merge, placed

KINDS = ("Route", "Middleware")


class Objects:
    """Objects read from files, as a ``watch.Store``."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}

    def objects(self) -> list[dict[str, Any]]:
        return [self.store[k] for k in sorted(self.store)]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get((namespace, name))


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    skipped: int = 0


def check_files(paths: list[str], base: dict[str, Any]) -> Report:
    """Check every Route and Middleware in ``paths`` against the config ``base`` (a normalized config dict)."""
    report = Report()
    stores = {kind: Objects() for kind in KINDS}
    where: dict[str, str] = {}                       # "Route ns/name" → "file: document N"
    for path in paths:
        try:
            with open(path) as f:
                documents = list(yaml.safe_load_all(f))
        except (OSError, yaml.YAMLError) as e:
            report.problems.append(f"{path}: {e}")
            continue
        for n, doc in enumerate(documents, 1):
            at = f"{path}: document {n}"
            if doc is None:
                continue
            if not isinstance(doc, dict) or doc.get("apiVersion") != f"{GROUP}/{VERSION}" \
                    or doc.get("kind") not in KINDS:
                report.skipped += 1
                continue
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            if not isinstance(meta.get("name"), str) or not meta["name"]:
                report.problems.append(f"{at}: metadata.name: required")
                continue
            obj = {**doc, "metadata": {**meta, "namespace": meta.get("namespace") or "default"}}
            key = (obj["metadata"]["namespace"], meta["name"])
            source = f"{doc['kind']} {key[0]}/{key[1]}"
            if source in where:
                report.problems.append(f"{at} ({source}): defined again (first in {where[source]})")
                continue
            where[source] = at
            stores[doc["kind"]].store[key] = obj
            report.checked += 1
    parts = RouteTranslator(stores).parts()
    good: list[Part] = []
    for middlewares_pass in (True, False):
        base_parts = list(good)
        for part in parts:
            if part.source.startswith("Middleware ") != middlewares_pass:
                continue
            problems = list(part.errors) + [placed(part, p) for p in _problems(base, [*base_parts, part])]
            report.problems += [f"{where[part.source]} ({part.source}): {p}" for p in problems]
            if not problems:
                good.append(part)
    return report


def _problems(base: dict[str, Any], parts: list[Part]) -> list[str]:
    """The validator's messages for ``base`` with the parts' tables added."""
    contribution = empty()
    for part in parts:
        for key in ("routers", "services", "middlewares"):
            contribution[key].update(getattr(part, key))
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    if not merge(data, contribution, []):
        return []
    try:
        GatewayConfig.from_dict(data, source=CONTEXT.removesuffix(": "))
    except ConfigError as e:
        return [str(p) for p in e.problems]
    return []
