"""Tokenizer for router rules (Traefik v3 syntax).

Token grammar, tried in this order at each position after skipping spaces and tabs::

    AND     '&&'
    OR      '||'
    NOT     '!'
    LPAREN  '('
    RPAREN  ')'
    COMMA   ','
    STRING  '`' any char except '`' '`'              raw: no escapes at all
          | '"' ( '\\"' | '\\\\' | any char except '"' )* '"'
                                                  only \\" and \\\\ are escapes; any other
                                                  backslash is kept, so "\\d+" stays a regex
    NAME    [A-Za-z][A-Za-z0-9_]*
    BAD     a run of anything else up to whitespace or one of ( ) , ` "
    END     once, after the last token

Invariants:

* ``column`` is 1-based and counts characters of the original text; END's column is ``len(text) + 1``.
* ``source`` is the exact text the token was read from, so errors can quote what the user wrote.
* Tokens are produced lazily, so the parser reports the first problem in reading order.  The only
  error raised here is an unterminated string; anything else unexpected becomes a BAD token that the
  parser rejects with a message saying what it expected instead.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from a3s_gateway.shared.errors import GatewayError


class RuleSyntaxError(GatewayError):
    """A rule could not be parsed or compiled; ``column`` (1-based) points at the offending text."""

    def __init__(self, message: str, column: int) -> None:
        self.message = message
        self.column = column
        super().__init__(f"column {column}: {message}")


class TokenKind(enum.Enum):
    AND = "&&"
    OR = "||"
    NOT = "!"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    STRING = "string"
    NAME = "name"
    BAD = "bad"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    value: str  # the unescaped argument for STRING, otherwise the same as ``source``
    column: int
    source: str

    def describe(self) -> str:
        """How the token reads in an error message: ``'&&'`` or ``end of rule``."""
        return "end of rule" if self.kind is TokenKind.END else f"'{self.source}'"


_WHITESPACE = " \t"
_PUNCTUATION = {
    "&&": TokenKind.AND,
    "||": TokenKind.OR,
    "!": TokenKind.NOT,
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    ",": TokenKind.COMMA,
}
# A BAD run stops where a token that the parser could resynchronise on would start.
_BAD_STOP = _WHITESPACE + '(),`"'


def tokenize(text: str) -> Iterator[Token]:
    """Yield the tokens of ``text``, ending with exactly one END token."""
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos == n:
            yield Token(TokenKind.END, "", n + 1, "")
            return
        start, char = pos, text[pos]
        kind = _PUNCTUATION.get(text[pos : pos + 2]) or _PUNCTUATION.get(char)
        if kind is not None:
            pos += len(kind.value)
            yield Token(kind, text[start:pos], start + 1, text[start:pos])
        elif char == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise RuleSyntaxError("unterminated `...` argument: expected a closing '`'", start + 1)
            pos = end + 1
            yield Token(TokenKind.STRING, text[start + 1 : end], start + 1, text[start:pos])
        elif char == '"':
            value, pos = _double_quoted(text, start)
            yield Token(TokenKind.STRING, value, start + 1, text[start:pos])
        elif char.isascii() and char.isalpha():
            pos += 1
            while pos < n and text[pos].isascii() and (text[pos].isalnum() or text[pos] == "_"):
                pos += 1
            yield Token(TokenKind.NAME, text[start:pos], start + 1, text[start:pos])
        else:
            pos += 1
            while pos < n and text[pos] not in _BAD_STOP and text[pos : pos + 2] not in ("&&", "||"):
                pos += 1
            yield Token(TokenKind.BAD, text[start:pos], start + 1, text[start:pos])


def _double_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the "..." string opening at ``start``; return its value and the position after it."""
    out: list[str] = []
    pos, n = start + 1, len(text)
    while pos < n:
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\" and pos + 1 < n and text[pos + 1] in '"\\':
            out.append(text[pos + 1])
            pos += 2
        else:
            out.append(char)
            pos += 1
    raise RuleSyntaxError('unterminated "..." argument: expected a closing \'"\'', start + 1)
