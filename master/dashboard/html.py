"""HTML building with escaping by default: every value is escaped unless it is ``Markup`` built here."""

from __future__ import annotations

import html
from collections.abc import Iterable
from urllib.parse import quote

VOID = frozenset({"input", "meta", "link", "br"})


class Markup(str):
    """Text that is already HTML (built by these helpers from escaped parts)."""


def e(value: object) -> Markup:
    """``value`` as HTML: Markup as is, ``None`` as a dash, anything else escaped (quotes included)."""
    if isinstance(value, Markup):
        return value
    return Markup("–" if value is None else html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    return Markup(sep.join(e(p) for p in parts))


def tag(element: str, /, *children: object, **attrs: object) -> Markup:
    """``<element attrs>children</element>``; ``class_`` is ``class``, ``aria_label`` is ``aria-label``."""
    attr = "".join(f' {k.rstrip("_").replace("_", "-")}="{e(v)}"' for k, v in attrs.items() if v is not None)
    if element in VOID:
        return Markup(f"<{element}{attr}>")
    return Markup(f"<{element}{attr}>{join(children)}</{element}>")


def link(href: str, text: object) -> Markup:
    return tag("a", text, href=href)


def obj_link(kind: str, name: str) -> Markup:
    """A link to one object's page (its name percent-encoded in the path)."""
    return link(f"/dashboard/{kind}/{quote(name, safe='')}", name)


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], class_: str | None = None) -> Markup:
    head = tag("tr", *(tag("th", h) for h in headers))
    body = join(tag("tr", *(tag("td", c) for c in row)) for row in rows)
    return tag("table", tag("thead", head), tag("tbody", body), class_=class_)
