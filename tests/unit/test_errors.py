"""The exception tree drawn in ``shared/errors.py``'s docstring is the real one: every class it names exists with
the parent it is drawn under, and every ``GatewayError`` subclass the gateway defines is drawn."""

from __future__ import annotations

import importlib
import pkgutil
import re

from a3s_gateway.shared import errors


def _drawn_tree() -> dict[str, str | None]:
    """class name -> the name it is drawn under (None for the root), read from the docstring's tree."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        found = re.match(r"^(\s*(?:[│ ]\s*)*(?:[├└]── )?)([A-Z]\w+)\s{2,}", line)
        if found is None:
            continue
        depth, name = len(found.group(1)), found.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def _gateway_error_classes() -> dict[str, type]:
    """Every GatewayError subclass defined in the gateway's own modules (each module imported once)."""
    for sub in ("master", "worker", "shared"):
        package = importlib.import_module(f"a3s_gateway.{sub}")
        for info in pkgutil.walk_packages(package.__path__, f"a3s_gateway.{sub}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    found: dict[str, type] = {}
    todo = [errors.GatewayError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("a3s_gateway."):
            found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


def test_the_documented_error_tree_is_the_real_class_tree() -> None:
    drawn = _drawn_tree()
    real = _gateway_error_classes()
    assert drawn["GatewayError"] is None
    assert set(drawn) == set(real), "drawn but not defined, or defined but not drawn"
    for name, parent in drawn.items():
        if parent is not None:
            assert real[name].__bases__ == (real[parent],), f"{name} is drawn under {parent}"


def test_request_path_errors_carry_their_status() -> None:
    assert errors.ConnectError("x").status == 502
    assert errors.UpstreamTimeout("x").status == 504
    assert errors.BadUpstreamResponse("x").status == 502
    assert errors.UpstreamTimeout("slow").message == "slow"
    assert [errors.BadRequest.status, errors.URITooLong.status, errors.HeaderTooLarge.status] == [400, 414, 431]
