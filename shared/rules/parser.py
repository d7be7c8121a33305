"""Recursive-descent parser for router rules: text -> AST.

Grammar (precedence ``!`` > ``&&`` > ``||``; whitespace allowed between any two tokens)::

    rule     := or END
    or       := and ( '||' and )*
    and      := unary ( '&&' unary )*
    unary    := '!' unary | primary
    primary  := '(' or ')' | matcher
    matcher  := NAME '(' [ STRING ( ',' STRING )* ] ')'

Invariants of the tree this returns:

* Every ``Matcher`` names a matcher in ``SIGNATURES`` that is allowed for the rule's kind, with an
  argument count inside its signature; anything else is a ``RuleSyntaxError`` with a column.
* ``And``/``Or`` are n-ary (``a && b && c`` is one ``And`` of three) and always have two or more operands.
* Nesting of ``(`` and ``!`` is bounded by ``MAX_DEPTH``, so neither parsing nor the compiled
  closures can hit Python's recursion limit on hostile input.

Argument *values* (regexes, IPs, paths) are checked when compiling, in ``matchers``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

from .lexer import RuleSyntaxError, Token, TokenKind, tokenize

MAX_DEPTH = 100

KINDS = ("http", "tcp")


@dataclass(frozen=True, slots=True)
class Signature:
    kinds: frozenset[str]
    min_args: int
    max_args: int | None  # None: no upper bound

    def describe(self) -> str:
        """The expected argument count, phrased for an error message."""
        if self.max_args is None:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.min_args == self.max_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} or {self.max_args} arguments"


_HTTP = frozenset({"http"})
_TCP = frozenset({"tcp"})
_BOTH = frozenset(KINDS)

# Names are case-sensitive and spelled as Traefik spells them.
SIGNATURES: dict[str, Signature] = {
    "Host": Signature(_HTTP, 1, None),
    "HostRegexp": Signature(_HTTP, 1, 1),
    "Path": Signature(_HTTP, 1, None),
    "PathPrefix": Signature(_HTTP, 1, None),
    "PathRegexp": Signature(_HTTP, 1, 1),
    "Method": Signature(_HTTP, 1, None),
    "Header": Signature(_HTTP, 2, 2),
    "Headers": Signature(_HTTP, 2, 2),  # the original implementation's spelling of Header
    "HeaderRegexp": Signature(_HTTP, 2, 2),
    "Query": Signature(_HTTP, 1, 2),
    "QueryRegexp": Signature(_HTTP, 2, 2),
    "ClientIP": Signature(_BOTH, 1, None),
    "Model": Signature(_HTTP, 1, None),  # the JSON body's "model" (matchers.py; read before routing)
    "HostSNI": Signature(_TCP, 1, None),
    "HostSNIRegexp": Signature(_TCP, 1, 1),
    "ALPN": Signature(_TCP, 1, 1),
}


@dataclass(frozen=True, slots=True)
class Arg:
    value: str  # unescaped
    column: int  # of the opening quote


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    args: tuple[Arg, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = Matcher | Not | And | Or


def parse(text: str, kind: str = "http") -> Node:
    """Parse ``text`` as a rule of ``kind`` ("http" or "tcp"); raise RuleSyntaxError on any problem."""
    if kind not in KINDS:
        raise ValueError(f"rule kind must be one of {KINDS}, not {kind!r}")
    return _Parser(text, kind).parse()


class _Parser:
    def __init__(self, text: str, kind: str) -> None:
        self._tokens: Iterator[Token] = tokenize(text)
        self._tok = next(self._tokens)
        self._prev: Token | None = None
        self._kind = kind
        self._depth = 0

    def parse(self) -> Node:
        if self._tok.kind is TokenKind.END:
            example = "Host(`example.com`)" if self._kind == "http" else "HostSNI(`example.com`)"
            raise RuleSyntaxError(f"empty rule: expected a matcher such as {example}", 1)
        node = self._or()
        if self._tok.kind is not TokenKind.END:
            self._fail("expected '&&', '||' or end of rule")
        return node

    def _advance(self) -> Token:
        """Consume the current token; never called on END, so the token stream is never exhausted."""
        self._prev, self._tok = self._tok, next(self._tokens)
        return self._prev

    def _fail(self, expected: str) -> NoReturn:
        raise RuleSyntaxError(f"{expected}, got {self._tok.describe()}", self._tok.column)

    def _or(self) -> Node:
        operands = [self._and()]
        while self._tok.kind is TokenKind.OR:
            self._advance()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Node:
        operands = [self._unary()]
        while self._tok.kind is TokenKind.AND:
            self._advance()
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _unary(self) -> Node:
        if self._tok.kind is TokenKind.NOT:
            self._enter()
            self._advance()
            node: Node = Not(self._unary())
            self._depth -= 1
            return node
        if self._tok.kind is TokenKind.LPAREN:
            self._enter()
            opening = self._advance()
            node = self._or()
            if self._tok.kind is not TokenKind.RPAREN:
                self._fail(f"expected ')' to close the '(' at column {opening.column}")
            self._advance()
            self._depth -= 1
            return node
        if self._tok.kind is TokenKind.NAME:
            return self._matcher()
        after = f" after {self._prev.describe()}" if self._prev is not None else ""
        self._fail(f"expected a matcher, '!' or '('{after}")

    def _enter(self) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._fail(f"rule nests too deeply: expected at most {MAX_DEPTH} levels of '(' and '!'")

    def _matcher(self) -> Matcher:
        name_tok = self._advance()
        name = name_tok.value
        signature = self._signature(name, name_tok.column)
        if self._tok.kind is not TokenKind.LPAREN:
            self._fail(f"expected '(' after matcher name {name}")
        self._advance()
        args: list[Arg] = []
        if self._tok.kind is TokenKind.RPAREN:
            self._advance()
        else:
            while True:
                if self._tok.kind is not TokenKind.STRING:
                    where = "after ',' in" if args else "in"
                    self._fail(f'expected a quoted argument (`...` or "...") {where} {name}')
                string = self._advance()
                args.append(Arg(string.value, string.column))
                if self._tok.kind is TokenKind.COMMA:
                    self._advance()
                elif self._tok.kind is TokenKind.RPAREN:
                    self._advance()
                    break
                else:
                    self._fail(f"expected ')' after arguments of {name}")
        too_few = len(args) < signature.min_args
        too_many = signature.max_args is not None and len(args) > signature.max_args
        if too_few or too_many:
            raise RuleSyntaxError(
                f"{name}() expects {signature.describe()}, got {len(args)}", name_tok.column
            )
        return Matcher(name, tuple(args), name_tok.column)

    def _signature(self, name: str, column: int) -> Signature:
        """Look ``name`` up for this rule's kind; on failure suggest the closest allowed name."""
        allowed = sorted(n for n, sig in SIGNATURES.items() if self._kind in sig.kinds)
        folded = {n.lower(): n for n in allowed}
        guess = folded.get(name.lower()) or next(iter(difflib.get_close_matches(name, allowed, n=1)), None)
        hint = f"did you mean '{guess}'?" if guess else f"expected one of: {', '.join(allowed)}"
        signature = SIGNATURES.get(name)
        if signature is None:
            raise RuleSyntaxError(f"unknown matcher '{name}' ({hint})", column)
        if self._kind not in signature.kinds:
            raise RuleSyntaxError(f"{name} is not allowed in {self._kind} rules ({hint})", column)
        return signature
