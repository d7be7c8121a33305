"""The compiled hot path's switch: ``A3S_GATEWAY_NO_EXTENSIONS=1`` loads every compiled module from its ``.py``
even where its extension lies beside it; without it, a built extension wins. Each case runs in a fresh
interpreter: the switch acts when the package is first imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from a3s_gateway.extensions import COMPILED, SWITCH
from support.extensions import REPO, built, expected_build

PROBE = """
import importlib, json
from a3s_gateway import extensions
files = {name: importlib.import_module(name).__file__ for name in extensions.COMPILED}
print(json.dumps({"files": files, "build": extensions.build()}))
"""


def probe(env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def without_switch() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != SWITCH}


def test_switch_loads_every_compiled_module_from_its_source() -> None:
    got = probe({**os.environ, SWITCH: "1"})
    assert got["build"] == "pure"
    assert all(path.endswith(".py") for path in got["files"].values()), got["files"]


def test_without_the_switch_a_built_extension_wins() -> None:
    env = without_switch()
    got = probe(env)
    for name, source in COMPILED.items():
        ext = built(name)
        assert got["files"][name] == str(ext if ext is not None else REPO / source)
    assert got["build"] == expected_build(env)


def test_switch_set_to_zero_does_not_force_pure() -> None:
    assert probe({**without_switch(), SWITCH: "0"})["build"] == expected_build(without_switch())
