"""Compile a parsed rule into a ``Rule``: one predicate that answers "does this request match?".

The predicates of the matchers every router uses (Host, Path, PathPrefix, Method, and the operators) are small
classes, native when compiled (``matchers.pxd``): a rule's test is then C calls over the request's fields. The
other matchers (regexes, headers, query, ClientIP, Model, the TCP ones) are closures wrapped in ``Call``.

Requests are duck-typed; the closures read only these attributes:

* http: ``host`` (lowercase, no port), ``path`` (no query), ``method`` (upper-case),
  ``headers`` (mapping of lowercase name -> list of values), ``query`` (mapping of name -> list of
  values; computed lazily by the caller, so only Query* matchers touch it), ``client_ip``, ``model``
  (the JSON body's ``model`` string or None; read only for rules with ``needs_body``).
* tcp: ``sni`` (lowercase, or None / "" without SNI), ``client_ip``, ``alpn`` (list of protocols).

Invariants:

* All work that does not depend on the request happens here, once: arguments are case-folded,
  regexes compiled, IPs parsed.  Equality and prefix checks never go through a regex.
* Invalid argument values (bad regex, bad IP/CIDR, a path without '/', an empty host) raise
  ``RuleSyntaxError`` at the column of the offending argument.
* Matching never raises on odd input: an unparsable client IP or a missing SNI simply does not match.

Semantics follow Traefik v3: PathPrefix is a plain string prefix (``/api`` matches ``/apiv2``),
PathRegexp is anchored at the start only (``re.match``), the other *Regexp matchers must match the
whole value.  IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``), in rules or from clients, are treated
as the IPv4 address they carry.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from ..ipmatch import IPSet, parse_network
from .lexer import RuleSyntaxError
from .parser import And, Arg, Matcher, Node, Not, Or, parse

Closure = Callable[[Any], bool]


class Predicate:
    """A compiled rule or part of one: ``test(req)``."""

    def test(self, req: Any) -> bool:
        raise NotImplementedError


class Call(Predicate):
    """A matcher compiled to a closure."""

    def __init__(self, fn: Callable[[Any], bool]) -> None:
        self.fn = fn

    def test(self, req: Any) -> bool:
        return self.fn(req)


class HostIs(Predicate):
    def __init__(self, name: str) -> None:
        self.name = name

    def test(self, req: Any) -> bool:
        return req.host == self.name


class HostIn(Predicate):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def test(self, req: Any) -> bool:
        return req.host in self.names


class PathIs(Predicate):
    def __init__(self, path: str) -> None:
        self.path = path

    def test(self, req: Any) -> bool:
        return req.path == self.path


class PathIn(Predicate):
    def __init__(self, paths: frozenset[str]) -> None:
        self.paths = paths

    def test(self, req: Any) -> bool:
        return req.path in self.paths


class PathPrefix(Predicate):
    def __init__(self, prefix: str | tuple[str, ...]) -> None:
        self.prefix = prefix                 # str.startswith takes either

    def test(self, req: Any) -> bool:
        return req.path.startswith(self.prefix)


class MethodIs(Predicate):
    def __init__(self, method: str) -> None:
        self.method = method

    def test(self, req: Any) -> bool:
        return req.method == self.method


class MethodIn(Predicate):
    def __init__(self, methods: frozenset[str]) -> None:
        self.methods = methods

    def test(self, req: Any) -> bool:
        return req.method in self.methods


class Negation(Predicate):
    def __init__(self, inner: Predicate) -> None:
        self.inner = inner

    def test(self, req: Any) -> bool:
        return not self.inner.test(req)


class AllOf(Predicate):
    def __init__(self, parts: tuple[Predicate, ...]) -> None:
        self.parts = parts

    def test(self, req: Any) -> bool:
        for part in self.parts:
            if not part.test(req):
                return False
        return True


class AnyOf(Predicate):
    def __init__(self, parts: tuple[Predicate, ...]) -> None:
        self.parts = parts

    def test(self, req: Any) -> bool:
        for part in self.parts:
            if part.test(req):
                return True
        return False


class Rule:
    """A compiled router rule.

    ``predicate`` is the compiled rule; ``matches`` is its ``test``, bound once (an instance attribute), so
    calling ``rule.matches(req)`` costs one call. ``hosts`` is the set of lowercase hosts the rule can only
    match on, for indexing routers by host, or None when the rule is not restricted that way.
    ``needs_body``: the rule uses ``Model()``, so the request body must be read before matching.
    """

    __slots__ = ("hosts", "kind", "length", "matches", "needs_body", "predicate", "text")

    def __init__(self, text: str, kind: str, hosts: frozenset[str] | None, predicate: Predicate,
                 needs_body: bool = False) -> None:
        self.text = text
        self.kind = kind
        self.length = len(text)  # Traefik's default router priority
        self.hosts = hosts
        self.predicate = predicate
        self.matches = predicate.test
        self.needs_body = needs_body

    def __repr__(self) -> str:
        return f"Rule({self.text!r}, kind={self.kind!r})"


def parse_rule(text: str, kind: str = "http") -> Rule:
    """Parse and compile ``text`` as an "http" or "tcp" rule; raise RuleSyntaxError if it is invalid."""
    tree = parse(text, kind)
    return Rule(text, kind, required_hosts(tree), compile_node(tree), uses(tree, "Model"))


def uses(node: Node, name: str) -> bool:
    """Whether matcher ``name`` appears anywhere in ``node`` (negated or not)."""
    if isinstance(node, Matcher):
        return node.name == name
    if isinstance(node, Not):
        return uses(node.operand, name)
    return any(uses(operand, name) for operand in node.operands)


def required_hosts(node: Node) -> frozenset[str] | None:
    """The hosts a request must have for ``node`` to match, or None if any host could match.

    A conjunction intersects the host sets of its operands (so ``Host(a) && Host(b)`` gives an empty
    set: it can never match); a disjunction is restricted only if every branch is, to the union.
    """
    if isinstance(node, Matcher):
        return frozenset(arg.value.lower() for arg in node.args) if node.name == "Host" else None
    if isinstance(node, And):
        result: frozenset[str] | None = None
        for operand in node.operands:
            hosts = required_hosts(operand)
            if hosts is not None:
                result = hosts if result is None else result & hosts
        return result
    if isinstance(node, Or):
        union: set[str] = set()
        for operand in node.operands:
            hosts = required_hosts(operand)
            if hosts is None:
                return None
            union |= hosts
        return frozenset(union)
    return None


def compile_node(node: Node) -> Predicate:
    """Turn a (validated) AST into a predicate over requests."""
    if isinstance(node, Matcher):
        compiled = _COMPILERS[node.name](node)
        return compiled if isinstance(compiled, Predicate) else Call(compiled)
    if isinstance(node, Not):
        return Negation(compile_node(node.operand))
    parts = tuple(compile_node(operand) for operand in node.operands)
    return AllOf(parts) if isinstance(node, And) else AnyOf(parts)


# -- argument checks ------------------------------------------------------------------------------


def _regex(arg: Arg, matcher: str, flags: int = 0) -> re.Pattern[str]:
    try:
        return re.compile(arg.value, flags)
    except re.error as exc:
        raise RuleSyntaxError(
            f"invalid regular expression {arg.value!r} in {matcher}: {exc}; expected a valid regex",
            arg.column,
        ) from None
    except (RecursionError, OverflowError):  # sre's parser recurses per group: "((((...))))" nested too deep
        raise RuleSyntaxError(
            f"invalid regular expression in {matcher}: nested too deeply; expected a valid regex", arg.column
        ) from None


def _host_name(arg: Arg, matcher: str) -> str:
    if not arg.value:
        raise RuleSyntaxError(f"expected a host name in {matcher}, got an empty string", arg.column)
    return arg.value.lower()


def _path(arg: Arg, matcher: str) -> str:
    if not arg.value.startswith("/"):
        raise RuleSyntaxError(
            f"expected a path starting with '/' in {matcher}, got {arg.value!r}", arg.column
        )
    return arg.value


# -- http matchers --------------------------------------------------------------------------------


def _host(m: Matcher) -> Predicate:
    names = [_host_name(arg, m.name) for arg in m.args]
    return HostIs(names[0]) if len(names) == 1 else HostIn(frozenset(names))


def _host_regexp(m: Matcher) -> Closure:
    fullmatch = _regex(m.args[0], m.name, re.IGNORECASE).fullmatch
    return lambda req: fullmatch(req.host) is not None


def _path_exact(m: Matcher) -> Predicate:
    paths = [_path(arg, m.name) for arg in m.args]
    return PathIs(paths[0]) if len(paths) == 1 else PathIn(frozenset(paths))


def _path_prefix(m: Matcher) -> Predicate:
    prefixes = tuple(_path(arg, m.name) for arg in m.args)
    return PathPrefix(prefixes[0] if len(prefixes) == 1 else prefixes)


def _path_regexp(m: Matcher) -> Closure:
    match = _regex(m.args[0], m.name).match
    return lambda req: match(req.path) is not None


def _method(m: Matcher) -> Predicate:
    methods = [arg.value.upper() for arg in m.args]
    return MethodIs(methods[0]) if len(methods) == 1 else MethodIn(frozenset(methods))


def _header(m: Matcher) -> Closure:
    name, value = m.args[0].value.lower(), m.args[1].value

    def header(req: Any) -> bool:
        values = req.headers.get(name)
        return values is not None and value in values

    return header


def _header_regexp(m: Matcher) -> Closure:
    name, fullmatch = m.args[0].value.lower(), _regex(m.args[1], m.name).fullmatch

    def header_regexp(req: Any) -> bool:
        values = req.headers.get(name)
        return values is not None and any(fullmatch(v) is not None for v in values)

    return header_regexp


def _query(m: Matcher) -> Closure:
    name = m.args[0].value
    if len(m.args) == 1:
        return lambda req: name in req.query
    value = m.args[1].value

    def query(req: Any) -> bool:
        values = req.query.get(name)
        return values is not None and value in values

    return query


def _query_regexp(m: Matcher) -> Closure:
    name, fullmatch = m.args[0].value, _regex(m.args[1], m.name).fullmatch

    def query_regexp(req: Any) -> bool:
        values = req.query.get(name)
        return values is not None and any(fullmatch(v) is not None for v in values)

    return query_regexp


def _model(m: Matcher) -> Closure:
    """Exact names in a set; ``*`` / ``?`` / ``[...]`` globs (fnmatch, case-sensitive) in one regex."""
    exact = frozenset(arg.value for arg in m.args if not any(c in arg.value for c in "*?["))
    globs = [fnmatch.translate(arg.value) for arg in m.args if arg.value not in exact]
    if not globs:
        return lambda req: req.model in exact
    fullmatch = re.compile("|".join(globs), re.DOTALL).fullmatch

    def model(req: Any) -> bool:
        name = req.model
        return name is not None and (name in exact or fullmatch(name) is not None)

    return model


# -- ClientIP (http and tcp) ----------------------------------------------------------------------


def _client_ip(m: Matcher) -> Closure:
    for arg in m.args:
        try:
            parse_network(arg.value)
        except ValueError:
            raise RuleSyntaxError(
                f"invalid IP address or CIDR {arg.value!r} in ClientIP: expected e.g. "
                "`10.0.0.1`, `10.0.0.0/8` or `2001:db8::/32`",
                arg.column,
            ) from None
    networks = IPSet(arg.value for arg in m.args)

    def client_ip(req: Any) -> bool:
        return req.client_ip in networks

    return client_ip


# -- tcp matchers ---------------------------------------------------------------------------------


def _host_sni(m: Matcher) -> Closure:
    exact: set[str] = set()
    suffixes: list[str] = []
    for arg in m.args:
        name = _host_name(arg, m.name)
        if name == "*":
            return lambda req: True  # catch-all, including connections without SNI
        if name.startswith("*.") and "*" not in name[2:] and len(name) > 2:
            suffixes.append(name[1:])  # ".example.com": any subdomain, never the apex
        elif "*" in name:
            raise RuleSyntaxError(
                f"expected '*', '*.domain' or a plain name in HostSNI, got {arg.value!r}", arg.column
            )
        else:
            exact.add(name)
    if not suffixes and len(exact) == 1:
        (only,) = exact
        return lambda req: req.sni == only
    names, ends = frozenset(exact), tuple(suffixes)

    def host_sni(req: Any) -> bool:
        sni = req.sni
        if not sni:
            return False
        if sni in names:
            return True
        for end in ends:
            if len(sni) > len(end) and sni.endswith(end):
                return True
        return False

    return host_sni


def _host_sni_regexp(m: Matcher) -> Closure:
    fullmatch = _regex(m.args[0], m.name, re.IGNORECASE).fullmatch
    return lambda req: bool(req.sni) and fullmatch(req.sni) is not None


def _alpn(m: Matcher) -> Closure:
    protocol = m.args[0].value
    return lambda req: protocol in req.alpn


_COMPILERS: dict[str, Callable[[Matcher], Predicate | Closure]] = {
    "Host": _host,
    "HostRegexp": _host_regexp,
    "Path": _path_exact,
    "PathPrefix": _path_prefix,
    "PathRegexp": _path_regexp,
    "Method": _method,
    "Header": _header,
    "Headers": _header,
    "HeaderRegexp": _header_regexp,
    "Query": _query,
    "QueryRegexp": _query_regexp,
    "ClientIP": _client_ip,
    "Model": _model,
    "HostSNI": _host_sni,
    "HostSNIRegexp": _host_sni_regexp,
    "ALPN": _alpn,
}
