"""The manual's reference lists are generated from the code (``docs/gen_reference.py``): a page on disk that
differs from what the code gives now, a key, metric or endpoint without a description, or a generated list that
no page shows fails here, so a new key cannot ship undocumented. Fix: ``python docs/gen_reference.py``."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from a3s_gateway.shared.config.middleware_types import MIDDLEWARE_TYPES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_pages_match_the_code() -> None:
    pages, _ = _generator().render()
    on_disk = {p.name: p.read_text() for p in (DOCS / "_generated").glob("*.md")}
    stale = sorted(name for name, text in pages.items() if on_disk.get(name) != text)
    extra = sorted(set(on_disk) - set(pages))
    assert not stale and not extra, (
        f"out of date: {stale}, no longer generated: {extra}; run `python docs/gen_reference.py`")


def test_every_config_key_and_admin_endpoint_has_a_description() -> None:
    _, problems = _generator().render()
    assert problems == []


def test_every_metric_family_has_help_text_and_a_unique_name() -> None:
    families = _generator().metric_families()
    names = [name for name, *_ in families]
    assert len(names) == len(set(names))
    assert all(doc.strip() for *_, doc in families)
    assert "a3s_gateway_requests_total" in names and "a3s_gateway_backend_agent_state" in names


def test_every_middleware_type_has_its_own_page_with_its_keys() -> None:
    for kind in MIDDLEWARE_TYPES:
        page = DOCS / "middlewares" / f"{kind}.md"
        assert page.exists(), f"middleware type '{kind}' has no page docs/middlewares/{kind}.md"
        text = page.read_text()
        assert f'--8<-- "_generated/middleware-{kind}.md"' in text
        assert "## Statuses it answers" in text and "```toml" in text


def test_every_generated_list_is_shown_by_some_page() -> None:
    included = set()
    for page in DOCS.rglob("*.md"):
        if "_generated" not in page.parts:
            included.update(re.findall(r'--8<-- "_generated/([^"]+)"', page.read_text()))
    generated = {p.name for p in (DOCS / "_generated").glob("*.md")}
    assert generated - included == set()
