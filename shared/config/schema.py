"""A small declarative field-spec system that checks and normalizes config values, plus reusable value checks.

A ``Spec`` describes one value: its type, how it is normalized (durations become float seconds, numbers become
floats) and an optional extra ``check``. A ``Table`` is a closed set of ``Field``\\ s (spec, default, required);
``MapOf`` is a table of user-chosen names (``routers.<name>``); ``ListOf`` a list; ``Nullable`` allows null.

Invariants:

* ``normalize`` never raises on bad input. Every problem goes to the ``Reporter`` with its dotted key path
  (``services.api.load_balancer.servers[1].url``) and checking carries on, so one pass finds every problem.
* A value that failed is returned as ``INVALID`` and left out of its container. Outputs are built only from spec
  outputs, so a normalized value holds only dict/list/str/int/float/bool/None.
* Unknown keys of a ``Table`` are problems, with the closest known key as suggestion.
* Defaults are normalized like given values, and normalizing an already normalized value changes nothing
  (``normalize(normalize(x)) == normalize(x)``), so normalized data can be re-checked after edits.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import Problem
from ..transport import LOCAL_SCHEMES, local_url_error
from .redact import MASK, is_secret_key, redact_url

Check = Callable[[Any], "str | None"]
"""An extra check on a normalized value: returns a problem message, or None when the value is fine."""


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()
"""Returned by ``Spec.normalize`` for a value that was reported as a problem."""


def suggest(word: object, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (difflib), or None when nothing is close."""
    if not isinstance(word, str):
        return None
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def join(path: str, key: object) -> str:
    """The dotted path of ``key`` inside the value at ``path``."""
    return f"{path}.{key}" if path else str(key)


class Reporter:
    """Collects the Problems of one load.

    ``origins`` maps a ``section.name`` prefix (``routers.api``) to the file that defined it, so problems about
    definitions merged from a conf.d file name that file instead of the main one.
    """

    def __init__(self, file: str, problems: list[Problem] | None = None) -> None:
        self.file = file
        self.problems: list[Problem] = [] if problems is None else problems
        self.origins: dict[str, str] = {}

    def for_file(self, file: str) -> Reporter:
        """A reporter for another file that adds to the same problem list."""
        return Reporter(file, self.problems)

    def add(self, path: str, message: str, suggestion: str | None = None) -> None:
        self.problems.append(Problem(self._file_for(path), path, message, suggestion))

    def _file_for(self, path: str) -> str:
        for prefix, origin in self.origins.items():
            if path == prefix or path.startswith((prefix + ".", prefix + "[")):
                return origin
        return self.file


def describe(value: object) -> str:
    """How a value is named in type errors: ``string '5'``, ``integer 5``, ``a list``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int):
        return f"integer {_g(value)}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value!s}"


def _quoted(choices: Iterable[str]) -> str:
    return ", ".join(repr(c) for c in choices)


# --------------------------------------------------------------------------------------------- specs


class Spec:
    """One value's type, normalization and optional extra check."""

    expected = "a value"

    def __init__(self, *, check: Check | None = None) -> None:
        self.check = check

    def normalize(self, value: Any, path: str, rep: Reporter) -> Any:
        """The normalized value, or INVALID after reporting why. Problems about a secret's value (a key
        ``is_secret_key`` names, e.g. ``keys[0]``, ``value``, ``password``) never quote that value."""
        before = len(rep.problems)
        out = self.convert(value, path, rep)
        if out is not INVALID and self.check is not None:
            message = self.check(out)
            if message:
                rep.add(path, message)
                out = INVALID
        if len(rep.problems) > before and isinstance(value, (str, int, float)) and not isinstance(value, bool) \
                and value != "" and is_secret_key(re.sub(r"\[\d+\]$", "", path.rpartition(".")[2])):
            secret = _g(value) if isinstance(value, int) else str(value)
            rep.problems[before:] = [
                dataclasses.replace(p, message=p.message.replace(secret, MASK),
                                    suggestion=p.suggestion and p.suggestion.replace(secret, MASK))
                for p in rep.problems[before:]]
        return out

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        out = self.coerce(value)
        if out is INVALID:
            self.type_error(value, path, rep)
        return out

    def coerce(self, value: Any) -> Any:
        """The normalized value if ``value`` has this spec's type, else INVALID (scalar specs only)."""
        raise NotImplementedError

    def type_error(self, value: Any, path: str, rep: Reporter) -> None:
        rep.add(path, f"expected {self.expected}, got {describe(value)}")


class Str(Spec):
    """A string; optionally non-empty, optionally one of ``choices`` (read at check time, so it may grow)."""

    expected = "a string"

    def __init__(
        self, *, choices: Collection[str] | None = None, nonempty: bool = False, check: Check | None = None
    ) -> None:
        super().__init__(check=check)
        self.choices = choices
        self.nonempty = nonempty

    def coerce(self, value: Any) -> Any:
        return value if isinstance(value, str) else INVALID

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        out = super().convert(value, path, rep)
        if out is INVALID:
            return out
        if self.nonempty and not out:
            rep.add(path, "must not be empty")
            return INVALID
        if self.choices is not None and out not in self.choices:
            rep.add(path, f"must be one of {_quoted(self.choices)}, got {out!r}", suggest(out, self.choices))
            return INVALID
        return out


class _Numeric(Spec):
    def __init__(
        self,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
        check: Check | None = None,
    ) -> None:
        super().__init__(check=check)
        self.minimum = minimum
        self.maximum = maximum
        self.exclusive_minimum = exclusive_minimum

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        out = super().convert(value, path, rep)
        if out is INVALID:
            return out
        message = None
        if isinstance(out, int) and not -(2**63) <= out < 2**63:   # TOML's range; YAML and dicts have none
            message = f"must fit in 64 bits, got {_g(out)}"
        elif self.minimum is not None:
            if self.exclusive_minimum and out <= self.minimum:
                message = f"must be greater than {self.minimum:g}, got {_g(out)}"
            elif out < self.minimum:
                message = f"must be at least {self.minimum:g}, got {_g(out)}"
        if self.maximum is not None and out > self.maximum:
            message = f"must be at most {self.maximum:g}, got {_g(out)}"
        if message:
            rep.add(path, message)
            return INVALID
        return out


def _g(x: float) -> str:
    """A number for a message: ints exactly (10**400 has no float form), floats short."""
    if not isinstance(x, int):
        return f"{x:g}"
    try:
        return str(x)
    except ValueError:   # over sys.get_int_max_str_digits() digits
        return f"<an integer of {x.bit_length()} bits>"


def _is_number(value: Any) -> bool:
    """A finite int or float (bool is not a number here; inf and nan are not JSON)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:   # an int past float's range (10**400): not a number any setting can use
        return False


class Int(_Numeric):
    expected = "an integer"

    def coerce(self, value: Any) -> Any:
        return value if isinstance(value, int) and not isinstance(value, bool) else INVALID


class Number(_Numeric):
    """An integer or float, normalized to float."""

    expected = "a number"

    def coerce(self, value: Any) -> Any:
        return float(value) if _is_number(value) else INVALID


class Bool(Spec):
    expected = "a boolean"

    def coerce(self, value: Any) -> Any:
        return value if isinstance(value, bool) else INVALID


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds in ``"10s"``, ``"500ms"``, ``"1.5s"``, ``"2h"``, ``"1m30s"``; None when not a duration."""
    text = text.strip()
    if not text or _DURATION_PART.sub("", text):
        return None
    seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    return seconds if math.isfinite(seconds) else None   # "999...9s" (400 digits) is inf


class Duration(Spec):
    """A duration string or a non-negative number of seconds, normalized to float seconds."""

    expected = "a duration like '10s', '500ms', '1m' or a number of seconds"

    def coerce(self, value: Any) -> Any:
        if _is_number(value):
            return float(value) if value >= 0 else INVALID
        if isinstance(value, str):
            seconds = parse_duration(value)
            return INVALID if seconds is None else seconds
        return INVALID


class Nullable(Spec):
    """``inner`` or null."""

    def __init__(self, inner: Spec) -> None:
        super().__init__()
        self.inner = inner

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        return None if value is None else self.inner.normalize(value, path, rep)


class ListOf(Spec):
    """A list of ``item``; fewer than ``min_items`` entries is a problem (``too_few`` is its message)."""

    expected = "a list"

    def __init__(self, item: Spec, *, min_items: int = 0, too_few: str | None = None) -> None:
        super().__init__()
        self.item = item
        self.min_items = min_items
        self.too_few = too_few or f"needs at least {min_items} entr{'y' if min_items == 1 else 'ies'}"

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        if not isinstance(value, list):
            self.type_error(value, path, rep)
            return INVALID
        if len(value) < self.min_items:
            rep.add(path, self.too_few)
        items = (self.item.normalize(v, f"{path}[{i}]", rep) for i, v in enumerate(value))
        return [v for v in items if v is not INVALID]


class MapOf(Spec):
    """A table of user-chosen string keys (checked by ``key_check``) to ``value``."""

    expected = "a table"

    def __init__(self, value: Spec, *, key_check: Check | None = None) -> None:
        super().__init__()
        self.value = value
        self.key_check = key_check

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        if not isinstance(value, dict):
            self.type_error(value, path, rep)
            return INVALID
        out = {}
        for key, item in value.items():
            message = (
                "name must be a string"
                if not isinstance(key, str)
                else (self.key_check(key) if self.key_check else None)
            )
            if message:
                rep.add(join(path, key), message)
                continue
            normalized = self.value.normalize(item, join(path, key), rep)
            if normalized is not INVALID:
                out[key] = normalized
        return out


@dataclass(frozen=True)
class Field:
    """One key of a Table. An absent optional key takes ``default`` (normalized like a given value)."""

    spec: Spec
    default: Any = None
    required: bool = False


PostHook = Callable[[dict[str, Any], dict[Any, Any], str, Reporter], None]
"""Table-level step run after the fields: (normalized table, raw table, path, reporter). It may fill computed
keys (defaults that depend on other keys, ``derived`` keys) and report problems that involve several keys."""


@dataclass
class Table(Spec):
    """A closed table: only ``fields`` (and ``derived`` keys, which ``post`` computes) are accepted.

    ``fields`` is a plain dict on purpose, so other modules may add keys to a shared table.
    A ``derived`` key given in the input must equal the computed value; this lets normalized data be re-checked.
    """

    fields: dict[str, Field]
    post: PostHook | None = None
    derived: tuple[str, ...] = ()
    check: Check | None = field(default=None, kw_only=True)
    expected = "a table"

    def convert(self, value: Any, path: str, rep: Reporter) -> Any:
        return self.convert_table(value, path, rep)

    def convert_table(
        self,
        value: Any,
        path: str,
        rep: Reporter,
        unknown_message: Callable[[str], str | None] | None = None,
    ) -> Any:
        """Like ``normalize``; ``unknown_message`` may give a specific message for an unknown key."""
        if not isinstance(value, dict):
            self.type_error(value, path, rep)
            return INVALID
        for key in value:
            if key not in self.fields and key not in self.derived:
                message = unknown_message(key) if unknown_message and isinstance(key, str) else None
                if message:
                    rep.add(join(path, key), message)
                else:
                    rep.add(join(path, key), f"unknown key '{key}'", suggest(key, self.fields))
        out: dict[str, Any] = {}
        for key, spec_field in self.fields.items():
            key_path = join(path, key)
            if key in value:
                normalized = spec_field.spec.normalize(value[key], key_path, rep)
            elif spec_field.required:
                rep.add(key_path, "required key is missing")
                continue
            else:
                normalized = spec_field.spec.normalize(copy.deepcopy(spec_field.default), key_path, rep)
            if normalized is not INVALID:
                out[key] = normalized
        if self.post is not None:
            self.post(out, value, path, rep)
        for key in self.derived:
            if key in value and key in out and value[key] != out[key]:
                rep.add(
                    join(path, key), f"is computed from the other keys (would be {out[key]!r}); leave it out"
                )
        return out


# ------------------------------------------------------------------------------------ reusable value checks


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of a listen address: ``IP:port``, ``[v6]:port``, ``:port`` (all interfaces, host
    ``0.0.0.0``) or ``localhost:port``. Raises ValueError with the reason."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError("expected '[IPv6]:port'")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("expected 'IP:port', '[IPv6]:port', ':port' or 'localhost:port'")
        if not host:
            host = "0.0.0.0"
        elif ":" in host:
            raise ValueError("IPv6 addresses must be written in brackets, like '[::1]:8080'")
        elif host != "localhost":
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"host must be an IP address or 'localhost', got '{host}'") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got '{port_text}'")
    return host, int(port_text)


def address_error(text: str) -> str | None:
    try:
        parse_address(text)
    except ValueError as e:
        return f"invalid address '{text}': {e}"
    return None


def ip_network_error(text: str) -> str | None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"'{text}' is not an IP address or CIDR range"
    return None


_NO_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(\[[0-9A-Fa-f:.]*\]|[^:@/?#\[\]]*)(:\d*)?([/?#].*)?\Z", re.DOTALL)


_UNESCAPED = re.compile(r'[\s"<>\\]')


def url_check(*schemes: str, port_required: Collection[str] = (), local: bool = False) -> Check:
    """A check that a string is a URL with one of ``schemes``, a host, and a valid port (required for the
    schemes in ``port_required``); ``local``: unix socket and vsock URLs too (``shared/transport.py``)."""
    accepted = (*schemes, *LOCAL_SCHEMES) if local else schemes

    def check(text: str) -> str | None:
        # a password in the URL never reaches an error message: quoted as written only when it cannot hold
        # userinfo, with the password masked when it is a well-formed scheme://user:pw@, else not quoted
        masked = redact_url(text)
        shown = text if _NO_USERINFO.match(text) else masked if masked != text else "(not shown: may hold a password)"
        try:
            parts = urlsplit(text)
            hostname = parts.hostname
        except ValueError as e:    # "http://[::1": Invalid IPv6 URL
            return f"URL '{shown}' is not a valid URL: {e}"
        if _UNESCAPED.search(text):     # kept out so that redact_url finds every userinfo in a log line
            return f"URL '{shown}' must not contain whitespace, '\"', '<', '>' or '\\' (percent-encode them)"
        if local and parts.scheme in LOCAL_SCHEMES:
            return local_url_error(text, shown)
        if parts.scheme not in schemes:
            return f"URL '{shown}' must start with {' or '.join(s + '://' for s in accepted)}"
        if not hostname:
            return f"URL '{shown}' has no host"
        try:
            port = parts.port
        except ValueError:
            return f"URL '{shown}' has an invalid port"
        if port is None and parts.scheme in port_required:
            return f"URL '{shown}' needs a port"
        return None

    return check


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def regex_error(text: str) -> str | None:
    """Why ``text`` is not a usable Python regular expression (None if it is)."""
    try:
        re.compile(text)
    except re.error as e:
        return f"invalid regular expression {text!r}: {e}"
    except (RecursionError, OverflowError):  # sre's parser recurses per group
        return "invalid regular expression: groups nested too deeply"
    return None


def header_name_error(text: str) -> str | None:
    """RFC 7230 token check for header (and cookie) names."""
    return None if _TOKEN.fullmatch(text) else f"'{text}' is not a valid header name"


def header_value_error(text: str) -> str | None:
    return "header values must not contain line breaks or NUL" if re.search(r"[\r\n\0]", text) else None


def path_error(text: str) -> str | None:
    return None if text.startswith("/") else f"'{text}' must start with '/'"


def readable_file_error(path: str) -> str | None:
    if not os.path.exists(path):
        return f"file '{path}' does not exist"
    if not os.path.isfile(path):
        return f"'{path}' is not a file"
    if not os.access(path, os.R_OK):
        return f"file '{path}' is not readable"
    return None
