"""HTTP/3 on a TLS entrypoint with ``http3 = true``, through the real binary (two workers) in front of a real
backend, with aioquic's client (h3_client.py): requests with and without bodies, a body streamed in pieces, a large
response streamed back, ``Alt-Svc`` on the entrypoint's TCP side, reloads (new routes, a new certificate) and a
configuration that asks for HTTP/3 without TLS. The same router/middleware/service cases as HTTP/1.1 and HTTP/2 run
over HTTP/3 in test_both_protocols*.py (protocol ``h3``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.shared.errors import ConfigError
from certs import CA
from h3_client import H3Connection, H3Transport, configuration
from harness import Backend, Gateway, free_port, wait_until

NAME = "localhost"
CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.secure]
address = "127.0.0.1:{secure}"
http3 = true
[entrypoints.secure.tls]
cert_file = "%(cert)s"
key_file = "%(key)s"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "%(backend)s"}]
[routers.app]
rule = "PathPrefix(`/`)"
service = "app"
"""
EXTRA_ROUTE = """
[routers.who]
rule = "PathPrefix(`/whoami`)"
service = "whoami@internal"
"""


@dataclass
class Env:
    gw: Gateway
    ca: CA
    backend: Backend
    config: str
    port: int

    def client(self) -> httpx.Client:
        """A new HTTP/3 connection (either worker may take it)."""
        return httpx.Client(transport=H3Transport(self.port, str(self.ca.path), NAME),
                            base_url=f"https://{NAME}:{self.port}", timeout=10)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ca = CA(tmp_path_factory.mktemp("pki"))
    pair = ca.issue(NAME)
    backend = Backend("h3app")
    config = CONFIG % {"cert": pair.cert, "key": pair.key, "backend": backend.url}
    port = free_port()
    gw = Gateway(config, tmp_path_factory.mktemp("gw"), workers=2, secure=port)
    try:
        yield Env(gw, ca, backend, config, port)
    finally:
        gw.stop()
        backend.stop()


def test_get_over_http3_reaches_the_backend_with_forwarded_fields(env: Env) -> None:
    with env.client() as c:
        r = c.get("/hello?x=1", headers={"X-Custom": "yes"})
    assert r.status_code == 200 and r.http_version == "HTTP/3"
    seen = r.json()
    assert (seen["name"], seen["method"], seen["path"], seen["query"]) == ("h3app", "GET", "/hello", "x=1")
    assert seen["headers"]["x-custom"] == ["yes"]
    assert seen["headers"]["x-forwarded-proto"] == ["https"]
    assert seen["headers"]["x-forwarded-for"] == ["127.0.0.1"]
    assert "alt-svc" not in r.headers           # announced on the TCP side, not over HTTP/3 itself


def test_post_body_over_http3_arrives_whole(env: Env) -> None:
    body = bytes(range(256)) * 1000
    with env.client() as c:
        r = c.post("/upload", content=body)
    assert r.status_code == 200
    assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_request_body_streamed_in_pieces_without_a_length_arrives_whole(env: Env) -> None:
    pieces = [b"%05d" % i * 200 for i in range(50)]
    with env.client() as c:
        r = c.post("/upload", content=iter(pieces))
    assert r.status_code == 200
    assert r.json()["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_large_response_streams_back_over_many_data_frames(env: Env) -> None:
    async def fetch() -> tuple[int, int, int]:
        from aioquic.asyncio.client import connect

        async with connect("127.0.0.1", env.port, configuration=configuration(str(env.ca.path), NAME),
                           create_protocol=H3Connection) as conn:
            got = await conn.request("GET", f"{NAME}:{env.port}", "/chunked/3000000")  # type: ignore[attr-defined]
            return got.status, len(got.body), len(got.chunks)

    status, size, frames = asyncio.run(asyncio.wait_for(fetch(), 30))
    assert (status, size) == (200, 3000000)
    assert frames > 1


def test_many_requests_share_one_http3_connection(env: Env) -> None:
    with env.client() as c:
        statuses = [c.get(f"/n/{i}").status_code for i in range(20)]
    assert statuses == [200] * 20


def test_tls_side_announces_http3_with_alt_svc_and_plain_side_does_not(env: Env) -> None:
    ctx = ssl.create_default_context(cafile=str(env.ca.path))
    want = f'h3=":{env.port}"; ma=86400'
    for http2 in (False, True):
        with httpx.Client(verify=ctx, http2=http2, timeout=10) as c:
            r = c.get(f"https://{NAME}:{env.port}/x")
        assert r.status_code == 200 and r.headers.get("alt-svc") == want, (http2, r.http_version)
    assert "alt-svc" not in httpx.get(env.gw.url + "/x", timeout=10).headers


def test_reload_gives_http3_the_new_routes(env: Env) -> None:
    env.gw.reload(env.config + EXTRA_ROUTE)
    try:
        def whoami_over_h3() -> bool:
            with env.client() as c:
                r = c.get("/whoami")
            return r.status_code == 200 and "HTTP/3" in r.text

        wait_until(whoami_over_h3, 10, what="whoami@internal over HTTP/3 after the reload")
    finally:
        env.gw.reload(env.config)


def test_reload_gives_new_http3_connections_the_new_certificate(env: Env, tmp_path: Path) -> None:
    """The certificate files are rewritten in place (as ACME or cert-manager do) and SIGHUP sent: new QUIC
    connections, whichever worker takes them, are verified against the new CA."""
    other = CA(tmp_path, name="another CA")
    fresh = other.issue(NAME)
    cert, key = _files(env.config)
    saved = cert.read_bytes(), key.read_bytes()
    cert.write_bytes(fresh.cert.read_bytes())
    key.write_bytes(fresh.key.read_bytes())
    try:
        env.gw.reload()
        for _ in range(4):                   # new connections: new client ports, so both workers take some
            with httpx.Client(transport=H3Transport(env.port, str(other.path), NAME), timeout=10) as c:
                assert c.get(f"https://{NAME}:{env.port}/after").status_code == 200
    finally:
        cert.write_bytes(saved[0])
        key.write_bytes(saved[1])
        env.gw.reload()


def _files(config: str) -> tuple[Path, Path]:
    lines = dict(line.split(" = ", 1) for line in config.splitlines() if line.startswith(("cert_file", "key_file")))
    return Path(lines["cert_file"].strip('"')), Path(lines["key_file"].strip('"'))


@pytest.mark.parametrize("table,message", [
    ('[entrypoints.a]\naddress = "127.0.0.1:1"\nhttp3 = true\n', "http3 needs tls"),
    ('[entrypoints.a]\naddress = "127.0.0.1:1"\nprotocol = "tcp"\nhttp3 = true\n', "http3 is for http entrypoints"),
])
def test_http3_without_tls_is_a_config_error_naming_the_key(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_file(path)
    problem = excinfo.value.problems[0]
    assert problem.path == "entrypoints.a.http3" and message in problem.message


def test_garbage_datagrams_and_malformed_requests_cost_no_worker(env: Env) -> None:
    """Random datagrams, a truncated QUIC Initial and a request with an invalid field name: the workers stay
    (same pids) and the next HTTP/3 connection is served."""
    pids = set(env.gw.worker_pids())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(50):
            s.sendto(os.urandom(1 + i * 25), ("127.0.0.1", env.port))
        s.sendto(b"\xc0\x00\x00\x00\x01\x08" + b"\x00" * 30, ("127.0.0.1", env.port))

    async def bad_request() -> object:
        from aioquic.asyncio.client import connect

        async with connect("127.0.0.1", env.port, configuration=configuration(str(env.ca.path), NAME),
                           create_protocol=H3Connection) as conn:
            try:
                return await asyncio.wait_for(conn.request(  # type: ignore[attr-defined]
                    "GET", f"{NAME}:{env.port}", "/bad", [(b"X-Upper", b"1")]), 10)
            except ConnectionError:
                return "closed"

    outcome = asyncio.run(bad_request())
    assert outcome == "closed" or outcome.reset is not None  # type: ignore[attr-defined]
    with env.client() as c:
        assert c.get("/after-garbage").status_code == 200
    assert set(env.gw.worker_pids()) == pids


def test_client_leaving_mid_response_frees_the_stream_and_the_worker_serves_on(env: Env) -> None:
    async def leave_early() -> int:
        from aioquic.asyncio.client import connect

        async with connect("127.0.0.1", env.port, configuration=configuration(str(env.ca.path), NAME),
                           create_protocol=H3Connection) as conn:
            task = asyncio.ensure_future(conn.request(  # type: ignore[attr-defined]
                "GET", f"{NAME}:{env.port}", "/download/50000000"))
            await asyncio.sleep(0)                        # the request is sent
            response = conn.pending[0][0]  # type: ignore[attr-defined]
            for _ in range(500):                          # bounded: until the first body bytes arrived
                if response.chunks:
                    break
                await asyncio.sleep(0.01)
        # the connection is closed with the response half-way: the request fails on the client side
        with contextlib.suppress(ConnectionError):
            await task
        return len(response.chunks)

    assert asyncio.run(leave_early()) > 0
    with env.client() as c:
        assert c.get("/after-leaving").status_code == 200


def test_http3_enabled_and_disabled_by_reload(env: Env, tmp_path: Path) -> None:
    """A reload that turns ``http3`` on binds the UDP sockets and serves QUIC; one that turns it off stops both the
    QUIC side and the ``Alt-Svc`` field, the TCP side serving on throughout."""
    without = env.config.replace("http3 = true\n", "")
    port = free_port()
    gw = Gateway(without, tmp_path, workers=2, secure=port)
    ctx = ssl.create_default_context(cafile=str(env.ca.path))
    try:
        def alt_svc() -> str | None:
            with httpx.Client(verify=ctx, timeout=10) as c:
                return c.get(f"https://{NAME}:{port}/x").headers.get("alt-svc")

        assert alt_svc() is None
        gw.reload(env.config)
        wait_until(lambda: alt_svc() == f'h3=":{port}"; ma=86400', what="Alt-Svc after enabling http3")
        with httpx.Client(transport=H3Transport(port, str(env.ca.path), NAME), timeout=10) as c:
            assert c.get(f"https://{NAME}:{port}/on").status_code == 200
        gw.reload(without)
        wait_until(lambda: alt_svc() is None, what="no Alt-Svc after disabling http3")
        with pytest.raises((ConnectionError, TimeoutError)):
            H3Transport(port, str(env.ca.path), NAME, timeout=2)
    finally:
        gw.stop()


def test_http3_on_the_port_of_a_udp_entrypoint_is_a_config_error(tmp_path: Path) -> None:
    ca = CA(tmp_path)
    pair = ca.issue(NAME)
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[entrypoints.dns]
address = "127.0.0.1:5353"
protocol = "udp"
[entrypoints.secure]
address = "127.0.0.1:5353"
http3 = true
[entrypoints.secure.tls]
cert_file = "{pair.cert}"
key_file = "{pair.key}"
""")
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_file(path)
    assert [(p.path, p.message) for p in excinfo.value.problems] == [
        ("entrypoints.secure.http3", "address '127.0.0.1:5353' is already used by entrypoints.dns.address")]
