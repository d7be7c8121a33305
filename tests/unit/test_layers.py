"""The import graph keeps the layers the design names (read from the source with ``ast``, nothing imported; imports
under ``if TYPE_CHECKING:`` only name types and are left out): the master never imports the data plane, the
exchange, chain, middlewares, services and upstream sides never import a server protocol, and only the connection
sniffer imports the HTTP/1.1 server module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"master": "a3s_gateway.master", "worker": "a3s_gateway.worker", "shared": "a3s_gateway.shared"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved; ``from x import y`` counts x and x.y)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for top in PACKAGES for path in (ROOT / top).rglob("*.py")}


def test_the_master_never_imports_the_worker() -> None:
    graph = _graph()
    offenders = {m for m, deps in graph.items() if m.startswith("a3s_gateway.master")
                 and any(d.startswith("a3s_gateway.worker") for d in deps)}
    assert offenders == set()


def test_only_the_sniffer_imports_the_http1_server_module() -> None:
    graph = _graph()
    importers = {m for m, deps in graph.items() if "a3s_gateway.worker.http1" in deps}
    assert importers == {"a3s_gateway.worker.handover"}


def test_the_exchange_middlewares_and_upstreams_import_no_server_protocol() -> None:
    graph = _graph()
    protocols = {f"a3s_gateway.worker.{m}" for m in ("http1", "handover", "http2.server", "http2.stream")}
    layers = tuple(f"a3s_gateway.worker.{m}" for m in ("exchange", "chain", "middlewares", "upstream", "services"))
    wrong = {m: deps & protocols for m, deps in graph.items() if m.startswith(layers) and deps & protocols}
    assert wrong == {}
