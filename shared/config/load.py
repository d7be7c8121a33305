"""Reading config documents: parsing TOML, YAML or JSON, ``${VAR}`` substitution, and merging a conf.d directory.

* The format follows the file extension: ``.yaml``/``.yml`` is YAML (``yaml.safe_load``), ``.json`` is JSON
  (parsed as JSON, not as YAML, so its errors say JSON and cite JSON's line and column), anything else TOML.
* Env substitution runs on every string value after parsing and before validation: ``${VAR}``,
  ``${VAR:-default}`` (default when unset or empty) and ``$${`` for a literal ``${``.
* ``load_file`` merges the ``entrypoints``/``routers``/``services``/``middlewares`` tables of every
  ``*.toml``/``*.yaml``/``*.yml``/``*.json`` file (sorted by name) in ``providers.file.directory`` — resolved
  against the main file's folder and stored resolved — into the main document. A missing directory adds nothing
  (the file provider may create it later). Definitions from a conf.d file are recorded in ``Reporter.origins``.

Invariant: nothing here raises on bad input; problems go to the Reporter (unreadable or unparsable documents
with path ``""``), and a function returns None only when there is no document to go on with.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import yaml

from .gateway_schema import SECTIONS
from .schema import Reporter, describe, join, suggest

YAML_EXTENSIONS = (".yaml", ".yml")
CONFIG_EXTENSIONS = (".toml", *YAML_EXTENSIONS, ".json")

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def format_of(path: str) -> str:
    """``"yaml"`` for .yaml/.yml files, ``"json"`` for .json files, else ``"toml"``."""
    lower = path.lower()
    return "yaml" if lower.endswith(YAML_EXTENSIONS) else "json" if lower.endswith(".json") else "toml"


def _loads(text: str, fmt: str) -> Any:
    if fmt == "toml":
        return tomllib.loads(text)
    return json.loads(text) if fmt == "json" else yaml.safe_load(text)


def parse(text: str, fmt: str, rep: Reporter) -> Any | None:
    """The parsed document (an empty YAML document is ``{}``), or None after reporting a syntax error."""
    try:
        document = _loads(text, fmt)
    except json.JSONDecodeError as e:     # a ValueError: caught before the generic one below
        rep.add("", f"invalid JSON: {e.msg} (at line {e.lineno}, column {e.colno})")
        return None
    except tomllib.TOMLDecodeError as e:
        rep.add("", f"invalid TOML: {e}")
        return None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        rep.add("", f"invalid YAML: {getattr(e, 'problem', None) or e}{where}")
        return None
    except ValueError as e:  # an integer over sys.get_int_max_str_digits() digits (after TOMLDecodeError)
        rep.add("", f"invalid {fmt.upper()}: {e}")
        return None
    except RecursionError:  # both parsers recurse per nesting level: "a = [[[[...]]]]"
        rep.add("", f"invalid {fmt.upper()}: arrays or tables nested too deeply")
        return None
    problem = _shape_error(document)
    if problem:
        rep.add("", f"invalid {fmt.upper()}: {problem}")
        return None
    return {} if document is None else document


MAX_DEPTH = 64
MAX_VALUES = 1_000_000


def _shape_error(document: Any) -> str | None:
    """Why a parsed document is too deep or too big to walk (a YAML alias that contains itself, an alias
    "billion laughs" that expands to more values than any config has), or None. Iterative: never recurses."""
    stack = [(document, 0)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            return f"more than {MAX_VALUES} values once YAML aliases are expanded"
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        if children and depth >= MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep (or a YAML alias contains itself)"
        stack.extend((child, depth + 1) for child in children)
    return None


def read(path: str, rep: Reporter) -> Any | None:
    """The parsed and env-substituted document at ``path``, or None after reporting why it has none."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        rep.add("", f"cannot read file: {e.strerror or e}")
        return None
    except UnicodeDecodeError as e:
        rep.add("", f"file is not valid UTF-8: {e}")
        return None
    document = parse(text, format_of(path), rep)
    return None if document is None else substitute_env(document, "", rep)


def substitute_env(value: Any, path: str, rep: Reporter, environ: Mapping[str, str] = os.environ) -> Any:
    """``value`` with ``${...}`` references in every string replaced; unset variables are problems."""
    if isinstance(value, dict):
        return {k: substitute_env(v, join(path, k), rep, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{path}[{i}]", rep, environ) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$${":
            return "${"
        if match[1] is None:
            rep.add(path, "unterminated '${' (write '$${' for a literal '${')")
            return match[0]
        variable = _VARIABLE.fullmatch(match[1])
        if variable is None:
            rep.add(
                path, f"invalid variable reference '{match[0]}' (expected ${{NAME}} or ${{NAME:-default}})"
            )
            return match[0]
        name, default = variable.groups()
        if environ.get(name):
            return environ[name]
        if default is not None:
            return default
        if name in environ:
            return ""
        rep.add(
            path, f"environment variable '{name}' is not set (use ${{{name}:-default}} to give a default)"
        )
        return match[0]

    return _REFERENCE.sub(replace, value)


def load_file(path: str, rep: Reporter) -> Any | None:
    """The main document at ``path`` with its conf.d directory merged in, or None if it could not be read."""
    document = read(path, rep)
    if not isinstance(document, dict):
        return document
    file_provider = (
        document.get("providers", {}).get("file") if isinstance(document.get("providers"), dict) else None
    )
    if isinstance(file_provider, dict) and isinstance(file_provider.get("directory"), str):
        directory = os.path.join(os.path.dirname(path), file_provider["directory"])
        file_provider["directory"] = directory
        if os.path.exists(directory) and not os.path.isdir(directory):
            rep.add("providers.file.directory", f"'{directory}' is not a directory")
        elif os.path.isdir(directory):
            _merge_directory(document, directory, rep)
    return document


def _merge_directory(document: dict[Any, Any], directory: str, rep: Reporter) -> None:
    for entry in sorted(os.listdir(directory)):
        fragment_path = os.path.join(directory, entry)
        if entry.lower().endswith(CONFIG_EXTENSIONS) and os.path.isfile(fragment_path):
            _merge_fragment(document, fragment_path, rep)


def _merge_fragment(document: dict[Any, Any], fragment_path: str, rep: Reporter) -> None:
    fragment_rep = rep.for_file(fragment_path)
    fragment = read(fragment_path, fragment_rep)
    if fragment is None:
        return
    if not isinstance(fragment, dict):
        fragment_rep.add("", f"expected a table at the top level, got {describe(fragment)}")
        return
    for section, definitions in fragment.items():
        if section not in SECTIONS:
            fragment_rep.add(
                str(section), f"key '{section}' cannot be set in a conf.d file", suggest(section, SECTIONS)
            )
            continue
        if not isinstance(definitions, dict):
            fragment_rep.add(section, f"expected a table, got {describe(definitions)}")
            continue
        target = document.setdefault(section, {})
        if not isinstance(target, dict):
            continue  # the main file's own type error is reported by validation
        for name, definition in definitions.items():
            key = join(section, name)
            if name in target:
                first = rep.origins.get(key, rep.file)
                fragment_rep.add(key, f"'{name}' is defined in both '{first}' and '{fragment_path}'")
                continue
            target[name] = definition
            rep.origins[key] = fragment_path
