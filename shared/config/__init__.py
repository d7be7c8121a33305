"""Gateway configuration: loading, validation, normalization and redaction.

The package holds the config's whole life before compilation: ``load`` (TOML/YAML, ``${VAR}``, conf.d),
``schema`` (the field-spec machinery), ``gateway_schema`` (the document's tables), ``middleware_types`` (the
registry of middleware types) with their key tables in ``middleware_schema`` and ``ai_schema``, ``validate``
(cross-references), ``default`` (the embedded default config) and ``redact`` (secrets hidden for display).

``GatewayConfig`` is an immutable-by-convention value: ``data`` is the normalized dict (defaults filled,
durations in float seconds, JSON-serializable), ``source`` where it came from. Every constructor raises
``ConfigError`` carrying every problem found (file, dotted key path, message, suggestion).

Invariant: normalization is idempotent, so ``GatewayConfig.from_dict(cfg.data) == cfg``; ``from_dict`` takes
values literally (no ``${VAR}`` substitution), which keeps that true for data containing a literal ``${``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from ..errors import ConfigError
from .default import DEFAULT_CONFIG, DEFAULT_SERVICE_NAMES
from .load import load_file, parse, substitute_env
from .redact import redact
from .schema import Reporter
from .validate import check

__all__ = ["DEFAULT_SERVICE_NAMES", "ConfigError", "GatewayConfig"]


class GatewayConfig:
    """A validated, normalized gateway config. Build one with the ``from_*`` constructors or ``default()``."""

    __slots__ = ("data", "source")

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    @classmethod
    def _checked(cls, raw: Any, rep: Reporter) -> GatewayConfig:
        data = check(raw, rep)
        if rep.problems:
            raise ConfigError(rep.problems)
        return cls(data, rep.file)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> GatewayConfig:
        """Load TOML or YAML (by extension), substitute ``${VAR}``, merge ``providers.file.directory``."""
        rep = Reporter(os.fspath(path))
        raw = load_file(rep.file, rep)
        if raw is None:
            raise ConfigError(rep.problems)
        return cls._checked(raw, rep)

    @classmethod
    def _from_text(cls, text: str, fmt: str, source: str) -> GatewayConfig:
        rep = Reporter(source)
        raw = parse(text, fmt, rep)
        if raw is None:
            raise ConfigError(rep.problems)
        return cls._checked(substitute_env(raw, "", rep), rep)

    @classmethod
    def from_toml(cls, text: str, source: str = "<toml>") -> GatewayConfig:
        return cls._from_text(text, "toml", source)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<yaml>") -> GatewayConfig:
        return cls._from_text(text, "yaml", source)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> GatewayConfig:
        """Validate a dict as is (no env substitution; normalized data is accepted again unchanged)."""
        return cls._checked(d, Reporter(source))

    @classmethod
    def default(cls) -> GatewayConfig:
        """Entrypoint ``web`` on 127.0.0.1:8080, router ``default`` (every path) to ``whoami@internal``."""
        return cls.from_dict(copy.deepcopy(DEFAULT_CONFIG), source="<default>")

    @property
    def entrypoints(self) -> dict[str, Any]:
        return self.data["entrypoints"]

    @property
    def routers(self) -> dict[str, Any]:
        return self.data["routers"]

    @property
    def services(self) -> dict[str, Any]:
        return self.data["services"]

    @property
    def middlewares(self) -> dict[str, Any]:
        return self.data["middlewares"]

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def redacted(self) -> dict[str, Any]:
        """A deep copy of ``data`` with every secret replaced by ``"***"``."""
        return redact(self.data)

    def with_listen(self, address: str) -> GatewayConfig:
        """A re-validated copy whose ``web`` entrypoint listens on ``address`` (an http ``web`` is added if
        there is none)."""
        data = self.to_dict()
        web = data["entrypoints"].setdefault("web", {"protocol": "http"})
        web.pop("host", None)
        web.pop("port", None)
        web["address"] = address
        return self._checked(data, Reporter(self.source))

    def with_admin(self, address: str) -> GatewayConfig:
        """A re-validated copy whose admin API listens on ``address``, or is disabled for ``"off"``."""
        data = self.to_dict()
        admin = data["admin"]
        admin.pop("host", None)
        admin.pop("port", None)
        if address == "off":
            admin["enabled"] = False
        else:
            admin.update(enabled=True, address=address)
        return self._checked(data, Reporter(self.source))

    def with_kubeconfig(self, path: str) -> GatewayConfig:
        """A re-validated copy whose Kubernetes provider reads ``path`` (unchanged without that provider)."""
        data = self.to_dict()
        if data["providers"].get("kubernetes") is None:
            return self
        data["providers"]["kubernetes"]["kubeconfig"] = path
        return self._checked(data, Reporter(self.source))

    def summary(self) -> str:
        """``gateway.toml: OK (2 entrypoints, 3 routers, 2 services, 4 middlewares)``."""
        counts = ", ".join(
            f"{len(self.data[section])} {section if len(self.data[section]) != 1 else section[:-1]}"
            for section in ("entrypoints", "routers", "services", "middlewares")
        )
        return f"{self.source}: OK ({counts})"

    def __eq__(self, other: object) -> bool:
        return self.data == other.data if isinstance(other, GatewayConfig) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<GatewayConfig {self.summary()}>"
