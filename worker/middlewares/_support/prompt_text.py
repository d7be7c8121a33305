"""The prompt text of an OpenAI-compatible request body, as the AI middlewares that judge it read it.

Chat completions carry ``messages`` (each ``content`` a string or a list of parts, of which only ``text`` parts
are read); completions carry ``prompt`` and the Responses API and embeddings carry ``input`` (a string, a list
of strings, or a list of messages). ``prompt`` and ``input`` strings count as user messages. ``prompt-guard``
inspects the last user message or more of them; ``semantic-cache`` embeds the whole conversation.
"""

from __future__ import annotations

from typing import Any

SCOPES = ("last-user", "user", "all")


def content_text(content: Any) -> str:
    """A message ``content``'s text: the string, or its ``text`` parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def messages(doc: dict[str, Any]) -> list[tuple[str, str]] | None:
    """(role, text) of every message of the body, or None when it has no ``messages``, ``prompt`` or ``input``."""
    for field in ("messages", "input", "prompt"):
        value = doc.get(field)
        if value is None:
            continue
        if isinstance(value, str):
            return [("user", value)]
        if isinstance(value, list):
            out = []
            for item in value:
                if isinstance(item, str):
                    out.append(("user", item))
                elif isinstance(item, dict):
                    role = item.get("role")
                    out.append((role if isinstance(role, str) else "user", content_text(item.get("content"))))
            return out
        return []
    return None


def select(items: list[tuple[str, str]], scope: str) -> list[str]:
    """The texts ``scope`` names: the last user message, every user message, or every message."""
    if scope == "all":
        return [t for _, t in items]
    users = [t for r, t in items if r == "user"]
    return users[-1:] if scope == "last-user" else users
