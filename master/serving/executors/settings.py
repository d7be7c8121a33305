"""Reading one executor's settings table (``[services.<s>.serving.revisions.<r>.<kind>]``) as it was written.

An executor parses its own table, so ``validate`` and the constructor read it the same way: every problem is
collected as ``"key: why"`` (the caller prefixes the table's path), never raised one at a time, and a key the
executor does not know is a problem too (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ....shared.config.schema import parse_duration


class SettingsError(ValueError):
    """An executor was built from settings that ``validate`` rejects."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class Reader:
    """Typed reads of one table; problems go to ``errors``."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.raw = dict(settings)
        self.errors: list[str] = []
        self._read: set[str] = set()

    def _get(self, key: str, required: bool) -> Any:
        self._read.add(key)
        if key not in self.raw and required:
            self.errors.append(f"{key}: required")
        return self.raw.get(key)

    def string(self, key: str, default: str = "", required: bool = False) -> str:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str) or (required and not value):
            self.errors.append(f"{key}: expected a non-empty string, got {value!r}")
            return default
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.errors.append(f"{key}: expected an integer ≥ {minimum}, got {value!r}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.errors.append(f"{key}: expected true or false, got {value!r}")
            return default
        return value

    def duration(self, key: str, default: float) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        seconds = (float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
                   else parse_duration(value) if isinstance(value, str) else None)
        if seconds is None:
            self.errors.append(f"{key}: expected a duration like '10s' or '500ms', got {value!r}")
            return default
        return seconds

    def strings(self, key: str) -> list[str]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.errors.append(f"{key}: expected a list of strings, got {value!r}")
            return []
        return value

    def table(self, key: str) -> dict[str, str]:
        value = self._get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                                                  for v in value.values()):
            self.errors.append(f"{key}: expected a table of strings, got {value!r}")
            return {}
        return {k: str(v) for k, v in value.items()}

    def port_range(self, key: str, default: str) -> range:
        """``"30000-30099"`` (both ends included)."""
        text = self.string(key, default)
        low, _, high = text.partition("-")
        if low.strip().isdigit() and high.strip().isdigit() and 0 < int(low) <= int(high) <= 65535:
            return range(int(low), int(high) + 1)
        self.errors.append(f"{key}: expected a port range like '30000-30099' within 1-65535, got {text!r}")
        return range(0)

    def port_ref(self, key: str) -> str:
        """A port given by name or number, as text (``""`` when unset)."""
        value = self._get(key, False)
        if value is None:
            return ""
        if (isinstance(value, str) and value) or (isinstance(value, int) and not isinstance(value, bool)
                                                   and 0 < value < 65536):
            return str(value)
        self.errors.append(f"{key}: expected a port name or a number within 1-65535, got {value!r}")
        return ""

    def secret(self, key: str, environ: Mapping[str, str] = os.environ) -> str:
        """``key`` itself, or the environment variable named by ``<key>_env`` (so the file need not hold it)."""
        given = self.string(key)
        env_name = self.string(f"{key}_env")
        if given and env_name:
            self.errors.append(f"{key}_env: give {key} or {key}_env, not both")
        if env_name:
            if env_name not in environ:
                self.errors.append(f"{key}_env: environment variable {env_name} is not set")
            return environ.get(env_name, "")
        return given

    def done(self) -> list[str]:
        """Every problem, unknown keys included."""
        unknown = sorted(set(self.raw) - self._read)
        return self.errors + [f"{k}: unknown setting (known: {', '.join(sorted(self._read))})" for k in unknown]
