"""The request-smuggling corpus: raw requests and backend responses, each with the outcome the gateway must give.

Payload ideas come from HTTP Garden's trophies (narfindustries/http-garden, TROPHIES.md), HAProxy's
reg-tests/http-messaging, h11's header rules and vegur's round-trip suite; the cases are written here in our
own words. Policy they encode (README, "Security and limits"):

- Anything whose framing could be read two ways is refused with 400 and the connection closed, before a byte
  is forwarded: bad or duplicate Content-Length, any Transfer-Encoding but exactly ``chunked``, TE together
  with CL (refused rather than "TE wins": nothing legitimate sends both), TE in HTTP/1.0, obs-fold, whitespace
  before the colon, bare CR/LF, control bytes in names or values, ``_`` spellings of framing headers.
- Invalid chunked bodies are a 400 and a closed connection; the backend never gets a complete request.
- What is accepted is forwarded normalized: canonical Content-Length, re-chunked bodies without extensions or
  trailers, so the backend always sees the message boundary the gateway saw.
- A bad backend response is a 502 (or, once bytes went out, a closed client connection), and that backend
  connection is closed, never reused.

``backend``: ``None`` means no byte reached the backend; ``[]`` means no complete request did (a head may have
been written before a body error); a list gives exactly the complete requests, as (method, target, body).
"""

from __future__ import annotations

from dataclasses import dataclass, field

H = b"Host: a\r\n"
GET = b"GET / HTTP/1.1\r\n" + H
POST = b"POST / HTTP/1.1\r\n" + H
TE = b"Transfer-Encoding: chunked\r\n"
CHUNKED = POST + TE + b"\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    payload: bytes | tuple[bytes, ...]
    statuses: tuple[int, ...]            # responses expected in order; () = none (closed or reset)
    closed: bool
    backend: list[tuple[str, str, bytes]] | None
    why: str = ""
    forwarded_has: tuple[bytes, ...] = ()
    forwarded_lacks: tuple[bytes, ...] = ()
    reset_ok: bool = False               # a large payload: the gateway may reset before the answer is read
    extra: dict = field(default_factory=dict)


def bad(name: str, payload: bytes, status: int = 400, backend: list | None = None, why: str = "",
        **kw: object) -> Case:
    return Case(name, payload, (status,), True, backend, why, **kw)  # type: ignore[arg-type]


def good(name: str, payload: bytes, backend: list, statuses: tuple[int, ...] = (200,), closed: bool = False,
         why: str = "", **kw: object) -> Case:
    return Case(name, payload, statuses, closed, backend, why, **kw)  # type: ignore[arg-type]


HELLO = [("POST", "/", b"hello")]

REQUEST_CASES: list[Case] = [
    # -- Content-Length
    good("cl_valid", POST + b"Content-Length: 5\r\n\r\nhello", HELLO),
    bad("cl_plus_sign", POST + b"Content-Length: +5\r\n\r\nhello", why="int('+5') == 5"),
    bad("cl_minus_sign", POST + b"Content-Length: -5\r\n\r\nhello"),
    bad("cl_hex", POST + b"Content-Length: 0x5\r\n\r\nhello", why="int(x, 0) reads hex"),
    bad("cl_underscore_digits", POST + b"Content-Length: 1_0\r\n\r\nhellohello", why="int('1_0') == 10"),
    bad("cl_inner_space", POST + b"Content-Length: 5 5\r\n\r\nhello"),
    good("cl_leading_zeros_canonical", POST + b"Content-Length: 005\r\n\r\nhello", HELLO,
         forwarded_has=(b"Content-Length: 5\r\n",), forwarded_lacks=(b": 005",)),
    good("cl_trailing_ows_canonical", POST + b"Content-Length: 5 \t\r\n\r\nhello", HELLO,
         forwarded_has=(b"Content-Length: 5\r\n",)),
    bad("cl_duplicate_identical", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    bad("cl_duplicate_different", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    bad("cl_comma_list", POST + b"Content-Length: 5, 5\r\n\r\nhello"),
    bad("cl_empty", POST + b"Content-Length: \r\n\r\nhello"),
    bad("cl_empty_then_valid", POST + b"Content-Length: \r\nContent-Length: 5\r\n\r\nhello",
        why="HAProxy CVE-2023-40225"),
    bad("cl_nbsp_suffix", POST + b"Content-Length: 5\xa0\r\n\r\nhello", why="str.strip() eats \\xa0"),
    bad("cl_nel_suffix", POST + b"Content-Length: 5\x85\r\n\r\nhello", why="str.strip() eats \\x85"),
    bad("cl_vertical_tab", POST + b"Content-Length:\x0b5\r\n\r\nhello"),
    bad("cl_overflow", POST + b"Content-Length: 99999999999999999999999999\r\n\r\nhello"),
    bad("cl_underscore_name", POST + b"Content_Length: 5\r\n\r\nhello", why="CGI merges _ and -"),
    good("cl_named_by_connection_is_kept", POST + b"Connection: content-length\r\nContent-Length: "
         + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED, [("POST", "/", SMUGGLED)],
         why="hop-by-hop abuse: dropping CL would turn the body into a second request"),
    good("cl_body_that_looks_like_a_request", POST + b"Content-Length: " + str(len(SMUGGLED)).encode()
         + b"\r\n\r\n" + SMUGGLED, [("POST", "/", SMUGGLED)]),
    good("get_with_body", GET + b"Content-Length: 5\r\n\r\nhello", [("GET", "/", b"hello")]),
    # -- Transfer-Encoding
    good("te_chunked_valid", CHUNKED + b"5\r\nhello\r\n0\r\n\r\n", HELLO,
         forwarded_has=(b"Transfer-Encoding: chunked\r\n",)),
    good("te_chunked_mixed_case", POST + b"Transfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n", HELLO,
         forwarded_lacks=(b"ChUnKeD",)),
    good("te_chunked_ows", POST + b"Transfer-Encoding:  chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n", HELLO),
    bad("te_gzip_only", POST + b"Transfer-Encoding: gzip\r\n\r\nhello"),
    bad("te_gzip_then_chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        why="llhttp accepts it; the gzip coding would be silently dropped"),
    bad("te_chunked_then_gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    bad("te_chunked_twice_in_list", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
    bad("te_two_fields_chunked", POST + TE + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n", why="Tornado trophy"),
    bad("te_two_fields_gzip_chunked", POST + b"Transfer-Encoding: gzip\r\n" + TE + b"\r\n0\r\n\r\n"),
    bad("te_empty_list_element", POST + b"Transfer-Encoding: ,chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    bad("te_xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    bad("te_chunked_suffix", POST + b"Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n"),
    bad("te_nbsp_suffix", POST + b"Transfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n"),
    bad("te_vertical_tab", POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"),
    bad("te_empty", POST + b"Transfer-Encoding: \r\n\r\n"),
    bad("te_identity_with_cl", POST + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"),
    bad("te_and_cl", POST + TE + b"Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        why="TE+CL is refused (documented), not forwarded"),
    bad("cl_and_te", POST + b"Content-Length: 5\r\n" + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n"),
    bad("te_and_cl_zero", POST + TE + b"Content-Length: 0\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    bad("te_in_http10", b"POST / HTTP/1.0\r\n" + H + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n",
        why="RFC 9112 6.1: faulty framing"),
    bad("te_underscore_name", POST + b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"),
    good("te_named_by_connection", POST + b"Connection: transfer-encoding\r\n" + TE
         + b"\r\n5\r\nhello\r\n0\r\n\r\n", HELLO),
    bad("te_obs_fold_value", POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    bad("te_space_before_colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    bad("te_tab_before_colon", POST + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n"),
    bad("te_gzip_chunked_then_smuggled", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        why="after a refused request nothing more is parsed or forwarded"),
    # -- chunked bodies
    bad("chunk_size_0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_size_empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_size_negative", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_size_plus", CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_size_trailing_space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_size_leading_space", CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_size_underscore", CHUNKED + b"1_0\r\nhellohello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_size_overflow", CHUNKED + b"10000000000000005\r\nhello\r\n0\r\n\r\n", backend=[],
        why="aiohttp CVE-2023-47627 class"),
    bad("chunk_size_nbsp", CHUNKED + b"5\xa0\r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_bare_lf", CHUNKED + b"5\nhello\n0\n\n", backend=[]),
    bad("chunk_data_without_crlf", CHUNKED + b"5\r\nhelloX0\r\n\r\n", backend=[]),
    bad("chunk_data_too_long", CHUNKED + b"3\r\nhello\r\n0\r\n\r\n", backend=[]),
    good("chunk_extension_dropped", CHUNKED + b"5;name=value\r\nhello\r\n0\r\n\r\n", HELLO,
         forwarded_lacks=(b"name=value",)),
    good("chunk_extension_quoted", CHUNKED + b'5;a="b;c"\r\nhello\r\n0\r\n\r\n', HELLO,
         forwarded_lacks=(b"b;c",)),
    bad("chunk_extension_nul", CHUNKED + b"5;a\x00\r\nhello\r\n0\r\n\r\n", backend=[]),
    bad("chunk_extension_bare_lf", CHUNKED + b"5;a\nhello\r\n0\r\n\r\n", backend=[]),
    good("chunk_size_leading_zeros", CHUNKED + b"0" * 64 + b"5\r\nhello\r\n0\r\n\r\n", HELLO,
         forwarded_lacks=(b"0" * 16,)),
    good("chunk_trailer_not_forwarded", CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n", HELLO,
         forwarded_lacks=(b"X-Trailer",)),
    bad("chunk_trailer_content_length", CHUNKED + b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", backend=[]),
    bad("chunk_line_never_ends", CHUNKED + b"5;" + b"a" * 900_000, backend=[], reset_ok=True,
        why="an endless chunk extension is cut, not buffered"),
    # -- header lines
    bad("obs_fold", GET + b"X-A: one\r\n two\r\n\r\n"),
    bad("space_before_colon", GET + b"X-A : one\r\n\r\n"),
    bad("bare_lf_request_line", b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
    bad("bare_lf_header", GET + b"X-A: one\n\r\n"),
    bad("bare_lf_everywhere", b"GET / HTTP/1.1\nHost: a\n\n"),
    bad("bare_cr_header", GET + b"X-A: one\rX-B: two\r\n\r\n"),
    bad("nul_in_value", GET + b"X-A: o\x00ne\r\n\r\n"),
    bad("cr_in_value", GET + b"X-A: o\rne\r\n\r\n"),
    bad("control_in_value", GET + b"X-A: o\x01ne\r\n\r\n"),
    bad("del_in_value", GET + b"X-A: o\x7fne\r\n\r\n"),
    bad("nul_in_name", GET + b"X-\x00A: one\r\n\r\n"),
    bad("nbsp_in_name", GET + b"X-A\xa0: one\r\n\r\n"),
    bad("empty_name", GET + b": one\r\n\r\n"),
    bad("space_before_first_header", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
    good("obs_text_value_passes", GET + b"X-A: caf\xe9\xa0\r\n\r\n", [("GET", "/", b"")],
         forwarded_has=(b"X-A: caf\xe9\xa0\r\n",)),
    bad("header_line_never_ends", GET + b"X-A: " + b"a" * 900_000, status=431, reset_ok=True,
        why="a header value is only handed over when complete; it must not grow without bound"),
    # -- request line, version, Host
    bad("http09_request", b"GET /\r\n\r\n", status=505),
    bad("http20_in_http1", b"GET / HTTP/2.0\r\n" + H + b"\r\n", status=505),
    bad("version_1_10", b"GET / HTTP/1.10\r\n" + H + b"\r\n"),
    bad("lowercase_method", b"get / HTTP/1.1\r\n" + H + b"\r\n"),
    bad("nul_in_target", b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n"),
    bad("nbsp_in_target", b"GET /\xa0 HTTP/1.1\r\n" + H + b"\r\n"),
    bad("tab_in_target", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n"),
    bad("relative_target", b"GET x HTTP/1.1\r\n" + H + b"\r\n"),
    bad("missing_host", b"GET / HTTP/1.1\r\n\r\n"),
    bad("duplicate_host", GET + b"Host: b\r\n\r\n"),
    bad("host_with_space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    bad("host_with_userinfo", b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"),
    bad("host_with_nbsp", b"GET / HTTP/1.1\r\nHost: a\xa0\r\n\r\n"),
    bad("host_with_slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
    bad("cl_underscore_name_beside_cl", POST + b"Content-Length: 5\r\ncontent_length: 50\r\n\r\nhello"),
    good("http10_without_host", b"GET / HTTP/1.0\r\n\r\n", [("GET", "/", b"")], closed=True),
    good("absolute_form_target", b"GET http://a/x?y=1 HTTP/1.1\r\n" + H + b"\r\n", [("GET", "/x?y=1", b"")]),
    good("leading_empty_lines", b"\r\n\r\n" + GET + b"\r\n", [("GET", "/", b"")]),
    # -- pipelining, keep-alive and limits
    good("pipelined_two", GET + b"\r\n" + GET + b"\r\n", [("GET", "/", b""), ("GET", "/", b"")],
         statuses=(200, 200)),
    good("connection_close_then_more", GET + b"Connection: close\r\n\r\n" + SMUGGLED, [("GET", "/", b"")],
         closed=True, why="bytes after Connection: close are never parsed"),
    good("expect_100_continue", POST + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", HELLO),
    bad("h2c_upgrade_refused", GET + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", status=501),
    bad("connect_refused", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
    bad("too_many_headers", GET + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n", status=431),
    bad("header_block_too_large", GET + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(10))
        + b"\r\n", status=431),
    bad("uri_too_long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", status=414),
]

# -- responses from the backend (the gateway as a client): GET /resp/<name> is answered with the raw bytes
R = b"HTTP/1.1 200 OK\r\n"
RESPONSE_CASES: list[tuple[str, bytes, int | None, bytes | None]] = [
    # (name, raw response, status the client gets (None: no complete response), body it gets)
    ("resp_valid_cl", R + b"Content-Length: 2\r\n\r\nhi", 200, b"hi"),
    ("resp_valid_chunked", R + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 200, b"hi"),
    ("resp_cl_duplicate_identical", R + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi", 502, None),
    ("resp_cl_duplicate_different", R + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nhi", 502, None),
    ("resp_cl_plus", R + b"Content-Length: +2\r\n\r\nhi", 502, None),
    ("resp_cl_nbsp", R + b"Content-Length: 2\xa0\r\n\r\nhi", 502, None),
    ("resp_te_and_cl", R + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 502, None),
    ("resp_te_gzip", R + b"Transfer-Encoding: gzip\r\n\r\nhi", 502, None),
    ("resp_te_gzip_chunked", R + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 502, None),
    ("resp_te_chunked_gzip", R + b"Transfer-Encoding: chunked, gzip\r\n\r\nhi", 502, None),
    ("resp_te_two_fields", R + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\nhi\r\n0\r\n\r\n", 502, None),
    ("resp_te_in_http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 502, None),
    ("resp_obs_fold", R + b"X-A: one\r\n two\r\nContent-Length: 2\r\n\r\nhi", 502, None),
    ("resp_bare_lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", 502, None),
    ("resp_nul_in_value", R + b"X-A: o\x00ne\r\nContent-Length: 2\r\n\r\nhi", 502, None),
    ("resp_space_before_colon", R + b"Content-Length : 2\r\n\r\nhi", 502, None),
    ("resp_status_099", b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nhi", 502, None),
    ("resp_status_2000", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nhi", 502, None),
    ("resp_version_09", b"HTTP/0.9 200 OK\r\nContent-Length: 2\r\n\r\nhi", 502, None),
    ("resp_version_20", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", 502, None),
    ("resp_garbage", b"NOT HTTP AT ALL\r\n\r\n", 502, None),
    ("resp_header_block_too_large", R + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(12))
     + b"Content-Length: 2\r\n\r\nhi", 502, None),
    ("resp_chunk_size_0x", R + b"Transfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n", None, None),
    ("resp_control_in_reason_replaced", b"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi", 200, b"hi"),
    ("resp_no_reason", b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi", 200, b"hi"),
    ("resp_interim_100_then_200", b"HTTP/1.1 100 Continue\r\n\r\n" + R + b"Content-Length: 2\r\n\r\nhi", 200, b"hi"),
]
