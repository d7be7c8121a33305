"""Router rule grammar: parsing, errors with columns, compiled matching, host extraction."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from a3s_gateway.shared.errors import GatewayError
from a3s_gateway.shared.rules import Rule, RuleSyntaxError, parse_rule
from a3s_gateway.shared.rules.lexer import TokenKind, tokenize
from a3s_gateway.shared.rules.matchers import _COMPILERS
from a3s_gateway.shared.rules.parser import MAX_DEPTH, SIGNATURES, And, Not, Or, parse


@dataclass
class Req:
    host: str = "example.com"
    path: str = "/"
    method: str = "GET"
    headers: dict[str, list[str]] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    client_ip: str = "10.0.0.1"


@dataclass
class Conn:
    sni: str | None = "example.com"
    client_ip: str = "10.0.0.1"
    alpn: list[str] = field(default_factory=list)


@dataclass
class NoQuery:
    """A request whose lazily computed query must not be touched."""

    host: str = "example.com"
    path: str = "/"
    method: str = "GET"
    headers: dict[str, list[str]] = field(default_factory=dict)
    client_ip: str = "10.0.0.1"

    @property
    def query(self) -> dict[str, list[str]]:
        raise AssertionError("query touched by a non-Query matcher")


def matches(text: str, req: Req | Conn | NoQuery, kind: str = "http") -> bool:
    return parse_rule(text, kind).matches(req)


def error(text: str, kind: str = "http") -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rule(text, kind)
    return info.value


# -- the Rule object ------------------------------------------------------------------------------


def test_rule_attributes() -> None:
    text = "Host(`Example.COM`) && PathPrefix(`/api`)"
    rule = parse_rule(text)
    assert isinstance(rule, Rule)
    assert rule.text == text
    assert rule.kind == "http"
    assert rule.length == len(text)
    assert rule.hosts == frozenset({"example.com"})
    assert rule.matches(Req(host="example.com", path="/api/v1"))
    assert not rule.matches(Req(host="example.com", path="/web"))


def test_matches_is_the_predicates_test_bound_once() -> None:
    rule = parse_rule("Path(`/`)")
    assert rule.matches is rule.matches  # bound once at compile time, not per call
    assert rule.matches.__self__ is rule.predicate


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="udp"):
        parse_rule("Host(`a`)", kind="udp")


def test_every_signature_has_a_compiler() -> None:
    assert SIGNATURES.keys() == _COMPILERS.keys()


# -- lexer ----------------------------------------------------------------------------------------


def test_tokens_carry_columns_and_source() -> None:
    tokens = list(tokenize('!Host(`a`,"b") &&\t(x || y)'))
    assert [(t.kind, t.column, t.source) for t in tokens] == [
        (TokenKind.NOT, 1, "!"),
        (TokenKind.NAME, 2, "Host"),
        (TokenKind.LPAREN, 6, "("),
        (TokenKind.STRING, 7, "`a`"),
        (TokenKind.COMMA, 10, ","),
        (TokenKind.STRING, 11, '"b"'),
        (TokenKind.RPAREN, 14, ")"),
        (TokenKind.AND, 16, "&&"),
        (TokenKind.LPAREN, 19, "("),
        (TokenKind.NAME, 20, "x"),
        (TokenKind.OR, 22, "||"),
        (TokenKind.NAME, 25, "y"),
        (TokenKind.RPAREN, 26, ")"),
        (TokenKind.END, 27, ""),
    ]


def test_double_quotes_unescape_only_quote_and_backslash() -> None:
    (string, _end) = list(tokenize(r'"a\"b\\c\d"'))
    assert string.value == 'a"b\\c\\d'


def test_backticks_are_raw() -> None:
    (string, _end) = list(tokenize(r"`a\`"))
    assert string.value == "a\\"


# -- quoting --------------------------------------------------------------------------------------


def test_operators_inside_quotes_are_not_split() -> None:
    assert matches("Path(`/a&&b`)", Req(path="/a&&b"))
    assert matches('Path("/a||b,c)")', Req(path="/a||b,c)"))
    assert not matches("Path(`/a&&b`)", Req(path="/a"))


def test_double_quoted_escapes_reach_the_matcher() -> None:
    assert matches(r'Header("X-Q", "say \"hi\" \\o/")', Req(headers={"x-q": ['say "hi" \\o/']}))


def test_double_quoted_regex_keeps_backslashes() -> None:
    assert matches(r'PathRegexp("^/v\d+/")', Req(path="/v12/users"))
    assert not matches(r'PathRegexp("^/v\d+/")', Req(path="/vx/users"))


def test_whitespace_anywhere_between_tokens() -> None:
    text = " \t!\t( Host ( `a` , `b` ) ||Path(`/x`) )&&Method(`GET`) "
    assert matches(text, Req(host="c", path="/y"))
    assert not matches(text, Req(host="a"))


# -- operators and precedence ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Host(`a`) && Path(`/p`)", True),
        ("Host(`a`) && Path(`/q`)", False),
        ("Host(`b`) && Path(`/p`)", False),
        ("Host(`b`) || Path(`/p`)", True),
        ("Host(`a`) || Path(`/q`)", True),
        ("Host(`b`) || Path(`/q`)", False),
        ("!Host(`b`)", True),
        ("!Host(`a`)", False),
        ("!!Host(`a`)", True),
        ("Host(`a`) && Path(`/p`) && Method(`GET`)", True),
        ("Host(`a`) && Path(`/p`) && Method(`POST`)", False),
        ("Host(`x`) || Host(`y`) || Host(`a`)", True),
        ("Host(`x`) || Host(`y`) || Host(`z`)", False),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert matches(text, Req(host="a", path="/p")) is expected


def test_and_binds_tighter_than_or() -> None:
    tree = parse("Host(`a`) || Host(`b`) && Path(`/p`)")
    assert isinstance(tree, Or) and isinstance(tree.operands[1], And)
    # a || (b && /p): true for host a on any path
    assert matches("Host(`a`) || Host(`b`) && Path(`/p`)", Req(host="a", path="/other"))
    assert not matches("(Host(`a`) || Host(`b`)) && Path(`/p`)", Req(host="a", path="/other"))


def test_not_binds_tighter_than_and() -> None:
    tree = parse("!Host(`a`) && Path(`/p`)")
    assert isinstance(tree, And) and isinstance(tree.operands[0], Not)
    # (!a) && /p: false for host b on another path; !(a && /p) would be true
    assert not matches("!Host(`a`) && Path(`/p`)", Req(host="b", path="/q"))
    assert matches("!(Host(`a`) && Path(`/p`))", Req(host="b", path="/q"))


def test_long_chains_do_not_recurse_per_operand() -> None:
    text = " && ".join(["PathPrefix(`/`)"] * 2000)
    assert matches(text, Req(path="/x"))
    text = " || ".join(["Path(`/nope`)"] * 2000 + ["Path(`/x`)"])
    assert matches(text, Req(path="/x"))


def test_nesting_up_to_the_limit_parses() -> None:
    text = "(" * MAX_DEPTH + "Host(`a`)" + ")" * MAX_DEPTH
    assert matches(text, Req(host="a"))


# -- http matchers --------------------------------------------------------------------------------


def test_host() -> None:
    assert matches("Host(`Example.COM`)", Req(host="example.com"))
    assert not matches("Host(`example.com`)", Req(host="www.example.com"))
    assert matches("Host(`a`, `B`)", Req(host="b"))
    assert not matches("Host(`a`, `b`)", Req(host="c"))


def test_host_regexp_is_full_and_case_insensitive() -> None:
    rule = "HostRegexp(`^[a-z]+\\.Example\\.com$`)"
    assert matches(rule, Req(host="api.example.com"))
    assert not matches(rule, Req(host="api.v2.example.com"))
    assert matches("HostRegexp(`.+\\.example\\.com`)", Req(host="a.example.com"))
    assert not matches("HostRegexp(`example\\.com`)", Req(host="example.com.evil"))


def test_path_is_exact() -> None:
    assert matches("Path(`/a`)", Req(path="/a"))
    assert not matches("Path(`/a`)", Req(path="/a/"))
    assert matches("Path(`/a`, `/b`)", Req(path="/b"))
    assert not matches("Path(`/a`, `/b`)", Req(path="/c"))


def test_path_prefix_is_a_plain_string_prefix() -> None:
    for path in ("/api", "/api/x", "/apiv2"):
        assert matches("PathPrefix(`/api`)", Req(path=path))
    assert not matches("PathPrefix(`/api`)", Req(path="/ap"))
    assert not matches("PathPrefix(`/api`)", Req(path="/web/api"))
    assert matches("PathPrefix(`/a`, `/b`)", Req(path="/b/c"))
    assert not matches("PathPrefix(`/a`, `/b`)", Req(path="/c"))


def test_path_regexp_is_anchored_at_start_only() -> None:
    assert matches("PathRegexp(`/v[0-9]+`)", Req(path="/v1/users"))
    assert not matches("PathRegexp(`/v[0-9]+`)", Req(path="/api/v1"))
    assert not matches("PathRegexp(`/v[0-9]+$`)", Req(path="/v1/users"))


def test_method_is_case_insensitive() -> None:
    assert matches("Method(`get`)", Req(method="GET"))
    assert not matches("Method(`GET`)", Req(method="POST"))
    assert matches("Method(`GET`, `post`)", Req(method="POST"))
    assert not matches("Method(`GET`, `POST`)", Req(method="PUT"))


@pytest.mark.parametrize("name", ["Header", "Headers"])
def test_header_name_case_insensitive_value_exact(name: str) -> None:
    req = Req(headers={"x-env": ["dev", "prod"]})
    assert matches(f"{name}(`X-Env`, `prod`)", req)
    assert not matches(f"{name}(`X-Env`, `Prod`)", req)
    assert not matches(f"{name}(`X-Env`, `pro`)", req)
    assert not matches(f"{name}(`X-Other`, `prod`)", req)


def test_header_regexp_fullmatches_any_value() -> None:
    req = Req(headers={"user-agent": ["curl/8.0", "Mozilla/5.0"]})
    assert matches("HeaderRegexp(`User-Agent`, `Mozilla/.*`)", req)
    assert not matches("HeaderRegexp(`User-Agent`, `Mozilla`)", req)
    assert not matches("HeaderRegexp(`Accept`, `.*`)", req)


def test_query() -> None:
    req = Req(query={"debug": [""], "tag": ["a", "b"]})
    assert matches("Query(`debug`)", req)
    assert not matches("Query(`trace`)", req)
    assert matches("Query(`tag`, `b`)", req)
    assert not matches("Query(`tag`, `c`)", req)
    assert not matches("Query(`missing`, `a`)", req)


def test_query_regexp_fullmatches_any_value() -> None:
    req = Req(query={"id": ["x", "42"]})
    assert matches("QueryRegexp(`id`, `[0-9]+`)", req)
    assert not matches("QueryRegexp(`id`, `[0-9]`)", req)
    assert not matches("QueryRegexp(`other`, `.*`)", req)


def test_only_query_matchers_touch_the_query() -> None:
    text = "Host(`example.com`) && Path(`/`) && Method(`GET`) && !Header(`a`, `b`) && ClientIP(`10.0.0.0/8`)"
    assert matches(text, NoQuery())
    with pytest.raises(AssertionError, match="query touched"):
        matches("Query(`a`)", NoQuery())


# -- ClientIP -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "client", "expected"),
    [
        ("ClientIP(`10.0.0.1`)", "10.0.0.1", True),
        ("ClientIP(`10.0.0.1`)", "10.0.0.2", False),
        ("ClientIP(`10.0.0.0/8`)", "10.200.3.4", True),
        ("ClientIP(`10.0.0.0/8`)", "11.0.0.1", False),
        ("ClientIP(`10.1.2.3/16`)", "10.1.99.1", True),  # host bits are ignored, as in Go
        ("ClientIP(`192.168.0.0/16`, `2001:db8::/32`)", "2001:db8::1", True),
        ("ClientIP(`192.168.0.0/16`, `2001:db8::/32`)", "2001:db9::1", False),
        ("ClientIP(`::1`)", "::1", True),
        ("ClientIP(`::1`)", "127.0.0.1", False),
        # IPv4-mapped IPv6 clients match IPv4 rules, and mapped rules match IPv4 clients
        ("ClientIP(`1.2.3.0/24`)", "::ffff:1.2.3.4", True),
        ("ClientIP(`1.2.3.0/24`)", "::ffff:1.2.4.4", False),
        ("ClientIP(`::ffff:1.2.3.0/120`)", "1.2.3.9", True),
        # an IPv6 address whose integer value falls inside an IPv4 network must not match it
        ("ClientIP(`10.0.0.0/8`)", "::a00:1", False),
        ("ClientIP(`10.0.0.0/8`)", "not-an-ip", False),
        ("ClientIP(`10.0.0.0/8`)", "", False),
        ("ClientIP(`0.0.0.0/0`)", "garbage", False),
    ],
)
def test_client_ip(rule: str, client: str, expected: bool) -> None:
    assert matches(rule, Req(client_ip=client)) is expected
    assert matches(rule, Conn(client_ip=client), kind="tcp") is expected


# -- tcp matchers ---------------------------------------------------------------------------------


def test_host_sni_exact_case_insensitive() -> None:
    assert matches("HostSNI(`Example.com`)", Conn(sni="example.com"), "tcp")
    assert not matches("HostSNI(`example.com`)", Conn(sni="www.example.com"), "tcp")
    assert not matches("HostSNI(`example.com`)", Conn(sni=None), "tcp")
    assert matches("HostSNI(`a.com`, `b.com`)", Conn(sni="b.com"), "tcp")
    assert not matches("HostSNI(`a.com`, `b.com`)", Conn(sni=""), "tcp")


@pytest.mark.parametrize("sni", ["example.com", "", None])
def test_host_sni_star_is_catch_all(sni: str | None) -> None:
    assert matches("HostSNI(`*`)", Conn(sni=sni), "tcp")
    assert matches("HostSNI(`a.com`, `*`)", Conn(sni=sni), "tcp")


def test_host_sni_wildcard_matches_subdomains_not_apex() -> None:
    rule = "HostSNI(`*.example.com`)"
    assert matches(rule, Conn(sni="www.example.com"), "tcp")
    assert matches(rule, Conn(sni="a.b.example.com"), "tcp")
    assert not matches(rule, Conn(sni="example.com"), "tcp")
    assert not matches(rule, Conn(sni="badexample.com"), "tcp")
    assert not matches(rule, Conn(sni=None), "tcp")
    assert matches("HostSNI(`*.example.com`, `example.com`)", Conn(sni="example.com"), "tcp")


def test_host_sni_regexp() -> None:
    assert matches("HostSNIRegexp(`^[a-z]+\\.example\\.com$`)", Conn(sni="api.example.com"), "tcp")
    assert not matches("HostSNIRegexp(`[a-z]+\\.example\\.com`)", Conn(sni="a.example.com.evil"), "tcp")
    assert matches("HostSNIRegexp(`API\\.example\\.com`)", Conn(sni="api.example.com"), "tcp")
    assert not matches("HostSNIRegexp(`.*`)", Conn(sni=None), "tcp")


def test_alpn() -> None:
    assert matches("ALPN(`h2`)", Conn(alpn=["h2", "http/1.1"]), "tcp")
    assert not matches("ALPN(`h2`)", Conn(alpn=["http/1.1"]), "tcp")
    assert not matches("ALPN(`h2`)", Conn(alpn=[]), "tcp")


def test_tcp_operators() -> None:
    rule = "HostSNI(`a.com`) && (ALPN(`h2`) || !ClientIP(`10.0.0.0/8`))"
    assert matches(rule, Conn(sni="a.com", alpn=["h2"]), "tcp")
    assert matches(rule, Conn(sni="a.com", client_ip="192.0.2.1"), "tcp")
    assert not matches(rule, Conn(sni="a.com", client_ip="10.1.1.1"), "tcp")


# -- hosts extraction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("Host(`A.com`)", {"a.com"}),
        ("Host(`a`) && Path(`/p`)", {"a"}),
        ("Path(`/p`) && (Host(`a`) && Method(`GET`))", {"a"}),
        ("Host(`a`, `b`)", {"a", "b"}),
        ("Host(`a`, `b`) && Host(`b`, `c`)", {"b"}),
        ("Host(`a`) && Host(`b`)", set()),  # can never match
        ("Host(`a`) && (Path(`/x`) || Path(`/y`))", {"a"}),
        ("Host(`a`) || Host(`b`)", {"a", "b"}),
        ("Host(`a`) || Path(`/p`)", None),
        ("!Host(`a`)", None),
        ("!Host(`a`) && Path(`/p`)", None),
        ("Path(`/p`)", None),
        ("HostRegexp(`a`)", None),
    ],
)
def test_hosts(text: str, hosts: set[str] | None) -> None:
    assert parse_rule(text).hosts == (None if hosts is None else frozenset(hosts))


def test_hosts_is_none_for_tcp_rules() -> None:
    assert parse_rule("HostSNI(`a.com`)", "tcp").hosts is None


# -- errors ---------------------------------------------------------------------------------------


def test_error_shape() -> None:
    exc = error("PathPrefix(`/a` && Host(`x`)")
    assert isinstance(exc, GatewayError)
    assert exc.column == 17
    assert exc.message == "expected ')' after arguments of PathPrefix, got '&&'"
    assert str(exc) == "column 17: expected ')' after arguments of PathPrefix, got '&&'"


@pytest.mark.parametrize(
    ("text", "kind", "column", "message"),
    [
        ("", "http", 1, "empty rule: expected a matcher such as Host(`example.com`)"),
        (" \t ", "http", 1, "empty rule: expected a matcher such as Host(`example.com`)"),
        ("", "tcp", 1, "empty rule: expected a matcher such as HostSNI(`example.com`)"),
        ("PathPrefx(`/a`)", "http", 1, "unknown matcher 'PathPrefx' (did you mean 'PathPrefix'?)"),
        ("Host(`a`) && host(`b`)", "http", 14, "unknown matcher 'host' (did you mean 'Host'?)"),
        (
            "Frobnicate(`a`)",
            "tcp",
            1,
            "unknown matcher 'Frobnicate' (expected one of: ALPN, ClientIP, HostSNI, HostSNIRegexp)",
        ),
        ("Host()", "http", 1, "Host() expects at least 1 argument, got 0"),
        ("Path(`/`) && Header(`a`)", "http", 14, "Header() expects 2 arguments, got 1"),
        ("Query(`a`, `b`, `c`)", "http", 1, "Query() expects 1 or 2 arguments, got 3"),
        ("HostRegexp(`a`, `b`)", "http", 1, "HostRegexp() expects 1 argument, got 2"),
        ("ALPN()", "tcp", 1, "ALPN() expects 1 argument, got 0"),
        ("Path(`/`) && Host(`a.com)", "http", 19, "unterminated `...` argument: expected a closing '`'"),
        ('Path("/a\\")', "http", 6, 'unterminated "..." argument: expected a closing \'"\''),
        ("PathPrefix(`/a` && Host(`x`)", "http", 17, "expected ')' after arguments of PathPrefix, got '&&'"),
        ("Host(`a`", "http", 9, "expected ')' after arguments of Host, got end of rule"),
        ("(Host(`a`) || Path(`/`)", "http", 24, "expected ')' to close the '(' at column 1, got end of rule"),
        ("Host", "http", 5, "expected '(' after matcher name Host, got end of rule"),
        (
            "Host(example.com)",
            "http",
            6,
            "expected a quoted argument (`...` or \"...\") in Host, got 'example'",
        ),
        ("Path(/api)", "http", 6, "expected a quoted argument (`...` or \"...\") in Path, got '/api'"),
        (
            "Host(`a`,)",
            "http",
            10,
            "expected a quoted argument (`...` or \"...\") after ',' in Host, got ')'",
        ),
        ("Host(`a`) Path(`/`)", "http", 11, "expected '&&', '||' or end of rule, got 'Path'"),
        ("Host(`a`))", "http", 10, "expected '&&', '||' or end of rule, got ')'"),
        ("Host(`a`) & Path(`/`)", "http", 11, "expected '&&', '||' or end of rule, got '&'"),
        ("Host(`a`) &&", "http", 13, "expected a matcher, '!' or '(' after '&&', got end of rule"),
        ("|| Host(`a`)", "http", 1, "expected a matcher, '!' or '(', got '||'"),
        ("Host(`a`) || && Path(`/`)", "http", 14, "expected a matcher, '!' or '(' after '||', got '&&'"),
        ("Host(`a`) && !", "http", 15, "expected a matcher, '!' or '(' after '!', got end of rule"),
        ("()", "http", 2, "expected a matcher, '!' or '(' after '(', got ')'"),
        ("`a`", "http", 1, "expected a matcher, '!' or '(', got '`a`'"),
        ("HostSNI(`a`)", "http", 1, "HostSNI is not allowed in http rules (did you mean 'Host'?)"),
        ("Host(`a`)", "tcp", 1, "Host is not allowed in tcp rules (did you mean 'HostSNI'?)"),
        (
            "HostSNI(`a`) && Path(`/`)",
            "tcp",
            17,
            "Path is not allowed in tcp rules (expected one of: ALPN, ClientIP, HostSNI, HostSNIRegexp)",
        ),
        ("Host(``)", "http", 6, "expected a host name in Host, got an empty string"),
        ("Path(`api`)", "http", 6, "expected a path starting with '/' in Path, got 'api'"),
        ("PathPrefix(`/a`, `b`)", "http", 18, "expected a path starting with '/' in PathPrefix, got 'b'"),
        (
            "HostSNI(`a.*.com`)",
            "tcp",
            9,
            "expected '*', '*.domain' or a plain name in HostSNI, got 'a.*.com'",
        ),
        ("HostSNI(`*.`)", "tcp", 9, "expected '*', '*.domain' or a plain name in HostSNI, got '*.'"),
    ],
)
def test_parse_errors(text: str, kind: str, column: int, message: str) -> None:
    exc = error(text, kind)
    assert (exc.column, exc.message) == (column, message)


@pytest.mark.parametrize(
    ("text", "kind", "column"),
    [
        ("PathRegexp(`(`)", "http", 12),
        ("Host(`a`) && HostRegexp(`[a-`)", "http", 25),
        ("HeaderRegexp(`X`, `*`)", "http", 19),
        ("QueryRegexp(`q`, `a{2,1}`)", "http", 18),
        ("HostSNIRegexp(`(`)", "tcp", 15),
    ],
)
def test_invalid_regex(text: str, kind: str, column: int) -> None:
    exc = error(text, kind)
    assert exc.column == column
    assert exc.message.startswith("invalid regular expression ")
    assert exc.message.endswith("; expected a valid regex")


@pytest.mark.parametrize(
    ("text", "column", "value"),
    [
        ("ClientIP(`1.2.3.400`)", 10, "1.2.3.400"),
        ("ClientIP(`10.0.0.0/8`, `10.0.0.0/33`)", 24, "10.0.0.0/33"),
        ("ClientIP(`2001:db8:::1`)", 10, "2001:db8:::1"),
        ("ClientIP(`example.com`)", 10, "example.com"),
    ],
)
def test_invalid_client_ip(text: str, column: int, value: str) -> None:
    exc = error(text)
    assert exc.column == column
    assert exc.message.startswith(f"invalid IP address or CIDR {value!r} in ClientIP: expected e.g. ")


def test_nesting_too_deep_is_a_syntax_error_not_a_recursion_error() -> None:
    exc = error("!" * (MAX_DEPTH + 5) + "Host(`a`)")
    assert exc.column == MAX_DEPTH + 1
    assert "expected at most" in exc.message
    exc = error("(" * (MAX_DEPTH + 1) + "Host(`a`)" + ")" * (MAX_DEPTH + 1))
    assert exc.column == MAX_DEPTH + 1


def test_first_error_in_reading_order_wins() -> None:
    # the unknown matcher comes before the unterminated quote, so it is reported
    assert error("Hots(`a`) && Path(`/x").column == 1


def test_model_matcher_exact_and_globs_and_needs_body() -> None:
    from types import SimpleNamespace

    rule = parse_rule("Model(`gpt-4o`, `gpt-4o-*`) && Method(`POST`)")
    assert rule.needs_body and not parse_rule("Path(`/a`)").needs_body
    assert parse_rule("!Model(`x`) || Path(`/a`)").needs_body
    ask = lambda model: rule.matches(SimpleNamespace(model=model, method="POST"))  # noqa: E731
    assert ask("gpt-4o") and ask("gpt-4o-mini") and not ask("gpt-4") and not ask(None) and not ask("GPT-4O")
    exact = parse_rule("Model(`a`)")
    assert exact.matches(SimpleNamespace(model="a")) and not exact.matches(SimpleNamespace(model=None))
