"""Router rules in Traefik v3 syntax: parse once, match many times.

    from a3s_gateway.shared.rules import parse_rule, Rule, RuleSyntaxError

    rule = parse_rule("Host(`example.com`) && PathPrefix(`/api`)", kind="http")
    rule.matches(request)   # the compiled closure
    rule.hosts              # frozenset({"example.com"}): the only hosts it can match, for indexing
    rule.length             # len(rule.text), Traefik's default priority

``lexer`` tokenizes, ``parser`` builds and validates the AST, ``matchers`` compiles it to closures.
"""

from .lexer import RuleSyntaxError
from .matchers import Rule, parse_rule

__all__ = ["Rule", "RuleSyntaxError", "parse_rule"]
