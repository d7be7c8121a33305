"""Fuzzing the router rule grammar (``shared.rules.parse_rule``): whatever the text, the only exception that may
come out is ``RuleSyntaxError`` (with a column inside the text), and a rule that parses matches requests
without raising.

Inputs are built from the grammar's own tokens (matcher names, operators, parentheses, both string kinds,
regex and CIDR fragments, stray bytes), so most examples get deep into the parser and the matcher compilers
instead of failing at the first character. Short run (CI): ``FUZZ_EXAMPLES`` (default 150) per test, times 10
here since a parse costs microseconds. Long run: ``FUZZ_EXAMPLES=200000 pytest tests/fuzz/test_rules_fuzz.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

hypothesis = pytest.importorskip("hypothesis")
from a3s_gateway.shared.rules import RuleSyntaxError, parse_rule  # noqa: E402
from a3s_gateway.shared.rules.parser import SIGNATURES  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150")) * 10
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

NAMES = sorted(SIGNATURES) + ["host", "Foo", "PathPrefix_", "A1"]
OPERATORS = ["&&", "||", "!", "(", ")", ",", " ", "\t", "&", "|", "!!", "\n", "\r", "\u00a0"]
ARG_TEXT = ["/", "/api", "a.example.com", "*.x", "GET", "post", "10.0.0.0/8", "::1", "[::1]", "1.2.3.4/33",
            "h2", "^/v[0-9]+$", "(", ")", "[", "(?P<x>a)", "(?i)", "\\", "\\d+", "*", "+", "{1,2}", "a{99999999999}",
            "(?<=a+)b", "\\N{BOGUS}", "\x00", "é", "", "X-Key", "k=v", "%", "{", "}"]
REQUEST_VALUES = st.text(alphabet=st.sampled_from("aA/.:-_0123456789 \x00é%[]"), max_size=12)


@st.composite
def arg(draw: st.DrawFn) -> str:
    body = "".join(draw(st.lists(st.sampled_from(ARG_TEXT), max_size=4)))
    quote = draw(st.sampled_from(["`", '"', "'", ""]))
    if quote == '"':
        body = body.replace("\\", "\\\\").replace('"', '\\"') if draw(st.booleans()) else body
    close = quote if draw(st.integers(0, 9)) else ""      # now and then an unterminated string
    return f"{quote}{body}{close}"


@st.composite
def matcher(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    args = draw(st.lists(arg(), max_size=4))
    sep = draw(st.sampled_from([", ", ",", " , ", " "]))
    close = ")" if draw(st.integers(0, 9)) else ""
    return f"{name}({sep.join(args)}{close}"


def _expr(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from([" && ", "||", " || ", "&&"]), children).map("".join),
        children.map(lambda c: f"!{c}"),
        children.map(lambda c: f"({c})"),
    )


RULES = st.recursive(matcher(), _expr, max_leaves=12)
# the well-formed rules mixed with stray grammar tokens and raw text
NOISY = st.one_of(
    RULES,
    st.lists(st.one_of(st.sampled_from(OPERATORS + NAMES), arg()), max_size=20).map("".join),
    st.tuples(RULES, st.integers(0, 200), st.sampled_from(OPERATORS + ["`", '"', "\\"])).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:]),
    st.text(max_size=60),
)


@dataclass
class Req:
    host: str = "example.com"
    path: str = "/"
    method: str = "GET"
    headers: dict[str, list[str]] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    client_ip: str = "10.0.0.1"
    model: str | None = None             # the JSON body's model, as worker/router.py's RequestView has


@dataclass
class Conn:
    sni: str | None = "example.com"
    client_ip: str = "10.0.0.1"
    alpn: list[str] = field(default_factory=list)


def _check(text: str, kind: str) -> object:
    try:
        return parse_rule(text, kind)
    except RuleSyntaxError as e:
        assert isinstance(e.column, int) and 1 <= e.column <= len(text) + 1, (text, e.column, e)
        assert str(e)
        return None


@SETTINGS
@given(text=NOISY, kind=st.sampled_from(["http", "tcp"]), host=REQUEST_VALUES, path=REQUEST_VALUES,
       value=REQUEST_VALUES, ip=st.sampled_from(["10.0.0.1", "::1", "not-an-ip", "", "1.2.3.4%eth0"]))
def test_rule_grammar_only_raises_rule_syntax_error(text: str, kind: str, host: str, path: str, value: str,
                                                    ip: str) -> None:
    rule = _check(text, kind)
    if rule is None:
        return
    if kind == "http":
        req = Req(host=host, path=path, method=value, headers={"X-Key": [value]}, query={"k": [value]},
                  client_ip=ip)
    else:
        req = Conn(sni=host or None, client_ip=ip, alpn=[value])
    assert rule.matches(req) in (True, False)


@pytest.mark.parametrize("text", [
    "(" * 5000 + "Path(`/`)" + ")" * 5000,
    "!" * 5000 + "Path(`/`)",
    " && ".join(["Path(`/`)"] * 5000),
    "PathRegexp(`" + "(" * 2000 + ")" * 2000 + "`)",
    "PathRegexp(`" + "(?:" * 500 + "a" + ")" * 500 + "`)",
    "PathRegexp(`a{4294967296}`)",
    "HostRegexp(`(?P<n>a)(?P<n>b)`)",
    "ClientIP(`1.2.3.4/99999999999999999999`)",
    "Host(`" + "a" * 100000 + "`)",
])
def test_pathological_rules_only_raise_rule_syntax_error(text: str) -> None:
    _check(text, "http")
