"""Build hook: compile the hot-path modules (``a3s_gateway/extensions.py``) with Cython where that works.

Everything else is in pyproject.toml. Compiling is an optimisation, never a requirement: without Cython or a C
compiler, on a Cython error, or with ``A3S_GATEWAY_NO_EXTENSIONS=1``, the package builds and installs as pure
Python (a warning says why). Editable installs and ``python setup.py build_ext --inplace`` put the extensions
beside their ``.py``.
"""

from __future__ import annotations

import sys
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def _extensions_module():
    spec = spec_from_file_location("_a3s_extensions", HERE / "master" / "_a3s_gateway" / "extensions.py")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package_tree(ext) -> Path:
    """``build/cython/a3s_gateway``: the installed package layout as symlinks into the source folders, so Cython
    names each module and resolves each ``cimport`` under its package name (``a3s_gateway.worker.exchange``)."""
    root = HERE / "build" / "cython"
    package = root / "a3s_gateway"
    package.mkdir(parents=True, exist_ok=True)
    links = {"__init__.py": "master/_a3s_gateway/__init__.py", "worker": "worker", "shared": "shared",
             "master": "master"}
    for name, target in links.items():
        link = package / name
        if not link.is_symlink():
            link.symlink_to(HERE / target)
    return root


def _warn(why: str) -> None:
    print(f"a3s-gateway: building pure Python ({why})", file=sys.stderr)


def ext_modules() -> list[Extension]:
    ext = _extensions_module()
    if ext.disabled():
        _warn(f"{ext.SWITCH} is set")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not installed")
        return []
    try:
        tree = _package_tree(ext)
        # -g0: no debug info, which would name the build folder (packages must not: packaging/build checks)
        modules = [Extension(name, [str(tree.joinpath(*name.split(".")).with_suffix(".py"))],
                             extra_compile_args=["-g0"]) for name in ext.COMPILED]
        return cythonize(modules, quiet=True, include_path=[str(tree)], compiler_directives={
            "language_level": 3,
            "annotation_typing": False,    # types come from the .pxd files; annotations stay documentation
            "binding": True,               # functions introspect like Python's (signatures, __wrapped__)
        })
    except Exception as e:                 # a Cython error (or no symlinks): the pure build still works
        _warn(f"Cython failed: {e}")
        return []


class OptionalBuildExt(build_ext):
    """``build_ext`` that skips an extension it cannot compile (no compiler, no Python headers)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:
            _warn(f"no C compiler: {e}")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            _warn(f"{ext.name} did not compile: {e}")


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
