"""The compiled hot path: which modules setup.py compiles with Cython, and which build this process runs.

The compiled modules are the same ``.py`` files compiled to C extensions (their hot classes become native
classes through the ``.pxd`` files beside them); the ``.py`` stays the one source and runs as is. A compiled
extension found beside its ``.py`` wins at import, unless ``A3S_GATEWAY_NO_EXTENSIONS`` is set (to anything but
empty or ``0``): then ``install()`` puts a finder first on ``sys.meta_path`` that loads these modules from their
source, so one install runs either build (the test suite runs both ways; a misbehaving extension can be ruled out
in production without reinstalling). The same variable makes setup.py build nothing.

Kept free of third-party imports: setup.py loads this file by path before any dependency is installed.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES, SOURCE_SUFFIXES, ModuleSpec, SourceFileLoader
from importlib.util import find_spec, spec_from_file_location
from pathlib import Path

SWITCH = "A3S_GATEWAY_NO_EXTENSIONS"

# Module name → source path in the repository (package-dir mapping of pyproject.toml). Together: the protocols
# pay compiled only with ``Exchange`` native too (docs/operations/capacity.md).
COMPILED = {
    "a3s_gateway.worker.exchange": "worker/exchange.py",
    "a3s_gateway.worker.chain": "worker/chain.py",
    "a3s_gateway.worker.http1": "worker/http1.py",
    "a3s_gateway.worker.http1_request": "worker/http1_request.py",
    "a3s_gateway.worker.upstream.http1": "worker/upstream/http1.py",
    "a3s_gateway.worker.observability.access_log": "worker/observability/access_log.py",
    "a3s_gateway.worker.observability.tracing": "worker/observability/tracing.py",
    "a3s_gateway.shared.plane.ledger": "shared/plane/ledger.py",
    "a3s_gateway.shared.plane.ratelimit": "shared/plane/ratelimit.py",
    "a3s_gateway.shared.plane.backend_ops": "shared/plane/backend_ops.py",
    "a3s_gateway.worker.observability.recorder": "worker/observability/recorder.py",
    "a3s_gateway.worker.middlewares.headers": "worker/middlewares/headers.py",
    "a3s_gateway.worker.middlewares.rate_limit": "worker/middlewares/rate_limit.py",
    "a3s_gateway.worker.middlewares._support.limit_key": "worker/middlewares/_support/limit_key.py",
    "a3s_gateway.worker.services.upstream_pool": "worker/services/upstream_pool.py",
    "a3s_gateway.worker.router": "worker/router.py",
    "a3s_gateway.shared.rules.matchers": "shared/rules/matchers.py",
    "a3s_gateway.worker.services.balancer": "worker/services/balancer.py",
    "a3s_gateway.worker.runtime": "worker/runtime.py",
    "a3s_gateway.worker.http2.fields": "worker/http2/fields.py",
    "a3s_gateway.worker.http2.endpoint": "worker/http2/endpoint.py",
    "a3s_gateway.worker.http2.stream": "worker/http2/stream.py",
}


def disabled() -> bool:
    """Pure Python is forced (build time and import time)."""
    return os.environ.get(SWITCH, "") not in ("", "0")


class SourceFirst:
    """A meta-path finder that loads the compiled modules from their ``.py`` even where an extension lies beside."""

    @classmethod
    def find_spec(cls, fullname: str, path: list[str] | None = None, target: object = None) -> ModuleSpec | None:
        if fullname not in COMPILED or not path:
            return None
        name = fullname.rpartition(".")[2]
        for entry in path:
            for suffix in SOURCE_SUFFIXES:
                source = Path(entry, name + suffix)
                if source.is_file():
                    return spec_from_file_location(fullname, source, loader=SourceFileLoader(fullname, str(source)))
        return None


def install() -> None:
    """Honour the switch for this process (called by the package's ``__init__``, before any module loads)."""
    if disabled() and SourceFirst not in sys.meta_path:
        sys.meta_path.insert(0, SourceFirst)


def compiled_modules() -> list[str]:
    """The compiled modules this process loads (or would load): their found origin is an extension."""
    found = []
    for name in COMPILED:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module is not None else getattr(find_spec(name), "origin", None)
        if origin and origin.endswith(tuple(EXTENSION_SUFFIXES)):
            found.append(name)
    return found


def build() -> str:
    """What ``--version`` and the health endpoint say: ``compiled (N of M modules)`` or ``pure``."""
    n = len(compiled_modules())
    return f"compiled ({n} of {len(COMPILED)} modules)" if n else "pure"
