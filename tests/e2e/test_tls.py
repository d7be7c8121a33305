"""TLS termination through the real binary: SNI certificate selection, ALPN, minimum version, mTLS, certificate
files swapped on disk, X-Forwarded-Proto, and bad certificate files rejected by validation."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from certs import CA, names_of, serial_of
from harness import BINARY, Backend, Gateway, free_port, wait_until
from proto_backends import HTTPSApp

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.secure]
address = "127.0.0.1:{secure}"
[entrypoints.secure.tls]
cert_file = "{pki}/default.test.pem"
key_file = "{pki}/default.test-key.pem"
certificates = [
  {cert_file = "{pki}/a.test.pem", key_file = "{pki}/a.test-key.pem"},
  {cert_file = "{pki}/b.test.pem", key_file = "{pki}/b.test-key.pem"},
]
[entrypoints.modern]
address = "127.0.0.1:{modern}"
[entrypoints.modern.tls]
cert_file = "{pki}/a.test.pem"
key_file = "{pki}/a.test-key.pem"
min_version = "1.3"
[entrypoints.mtls]
address = "127.0.0.1:{mtls}"
[entrypoints.mtls.tls]
cert_file = "{pki}/a.test.pem"
key_file = "{pki}/a.test-key.pem"
client_ca_file = "{ca}"
[admin]
address = "127.0.0.1:{admin}"

[routers.all]
rule = "PathPrefix(`/`)"
service = "app"
[routers.verified]
rule = "PathPrefix(`/upstream-tls/verified`)"
service = "tls-verified"
[routers.unverifiable]
rule = "PathPrefix(`/upstream-tls/system-store`)"
service = "tls-system-store"
[routers.insecure]
rule = "PathPrefix(`/upstream-tls/insecure`)"
service = "tls-insecure"
[services.app.load_balancer]
servers = [{url = "{backend}"}]
[services.tls-verified.load_balancer]
servers = [{url = "https://localhost:{tls_backend}"}]
tls = {ca_file = "{ca}"}
[services.tls-system-store.load_balancer]
servers = [{url = "https://localhost:{tls_backend}"}]
[services.tls-insecure.load_balancer]
servers = [{url = "https://127.0.0.1:{tls_backend}"}]
tls = {insecure_skip_verify = true}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CA:
    ca = CA(tmp_path_factory.mktemp("pki"))
    ca.issue("default.test")
    ca.issue("a.test")
    ca.issue("b.test", "*.b.test")
    ca.issue("localhost")
    return ca


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, pki: CA) -> Iterator[Gateway]:
    backend = Backend("tls-app")
    tls_backend = HTTPSApp(str(pki.folder / "localhost.pem"), str(pki.folder / "localhost-key.pem"))
    config = CONFIG.replace("{pki}", str(pki.folder)).replace("{ca}", str(pki.path)).replace(
        "{backend}", backend.url).replace("{tls_backend}", str(tls_backend.port))
    g = Gateway(config, tmp_path_factory.mktemp("gw"), secure=free_port(), modern=free_port(), mtls=free_port())
    yield g
    g.stop()
    backend.stop()
    tls_backend.stop()


def client_context(pki: CA, **kwargs: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.path))
    for k, v in kwargs.items():
        setattr(ctx, k, v)
    return ctx


def peer_cert(port: int, ctx: ssl.SSLContext, server_name: str | None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)


def test_sni_selects_the_certificate_by_exact_wildcard_and_default_name(gw: Gateway, pki: CA) -> None:
    port = gw.ports["secure"]
    ctx = client_context(pki)
    assert names_of(peer_cert(port, ctx, "a.test")) == ["a.test"]
    assert names_of(peer_cert(port, ctx, "b.test")) == ["b.test", "*.b.test"]
    assert names_of(peer_cert(port, ctx, "deep.b.test")) == ["b.test", "*.b.test"]
    unverified = client_context(pki, check_hostname=False)
    assert names_of(peer_cert(port, unverified, "other.test")) == ["default.test"]
    assert names_of(peer_cert(port, unverified, None)) == ["default.test"]


def test_https_request_is_proxied_with_forwarded_proto_https(gw: Gateway, pki: CA) -> None:
    port = gw.ports["secure"]
    with httpx.Client(verify=client_context(pki)) as c:
        r = c.get(f"https://127.0.0.1:{port}/hello", extensions={"sni_hostname": "a.test"},
                  headers={"X-Forwarded-Proto": "spoofed", "Host": "a.test"})
    assert r.status_code == 200
    assert r.json()["headers"]["x-forwarded-proto"] == ["https"]
    assert r.json()["headers"]["x-forwarded-port"] == [str(port)]


def test_alpn_offers_h2_and_http11(gw: Gateway, pki: CA) -> None:
    port = gw.ports["secure"]
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = client_context(pki)
        ctx.set_alpn_protocols(offered)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.test") as tls:
                assert tls.selected_alpn_protocol() == chosen


def test_min_version_13_rejects_a_tls12_client(gw: Gateway, pki: CA) -> None:
    port = gw.ports["modern"]
    old = client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        peer_cert(port, old, "a.test")
    assert names_of(peer_cert(port, client_context(pki), "a.test")) == ["a.test"]
    # the default minimum is 1.2: TLS 1.1 is refused by the other entrypoint
    ancient = client_context(pki, minimum_version=ssl.TLSVersion.MINIMUM_SUPPORTED,
                             maximum_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError):
        peer_cert(gw.ports["secure"], ancient, "a.test")


def test_mtls_requires_a_client_certificate_signed_by_the_ca(gw: Gateway, pki: CA) -> None:
    port = gw.ports["mtls"]
    url = f"https://127.0.0.1:{port}/who"
    with pytest.raises(httpx.HTTPError):
        with httpx.Client(verify=client_context(pki, check_hostname=False)) as c:
            c.get(url)
    client = pki.issue("client.test", client=True)
    ctx = client_context(pki, check_hostname=False)
    ctx.load_cert_chain(client.cert, client.key)
    with httpx.Client(verify=ctx) as c:
        assert c.get(url).status_code == 200
    stranger = CA(pki.folder / "other", "stranger CA").issue("client.test", client=True)
    ctx = client_context(pki, check_hostname=False)
    ctx.load_cert_chain(stranger.cert, stranger.key)
    with pytest.raises(httpx.HTTPError):
        with httpx.Client(verify=ctx) as c:
            c.get(url)


def test_certificate_replaced_on_disk_is_served_without_dropping_connections(gw: Gateway, pki: CA) -> None:
    port = gw.ports["secure"]
    ctx = client_context(pki)
    before = serial_of(peer_cert(port, ctx, "a.test"))
    with httpx.Client(verify=ctx) as c:
        url = f"https://127.0.0.1:{port}/keep"
        ext = {"sni_hostname": "a.test"}
        assert c.get(url, extensions=ext).status_code == 200          # a keep-alive connection is open
        pki.issue("a.test")                                           # no SIGHUP: the workers watch the files
        wait_until(lambda: serial_of(peer_cert(port, ctx, "a.test")) != before, timeout=10,
                   what="new certificate served")
        assert c.get(url, extensions=ext).status_code == 200          # ... and still works afterwards
    before = serial_of(peer_cert(port, ctx, "b.test"))
    pki.issue("b.test", "*.b.test")
    gw.reload()                                                       # SIGHUP re-reads them as well
    wait_until(lambda: serial_of(peer_cert(port, ctx, "b.test")) != before, timeout=10, what="reloaded cert")


def test_bad_certificate_files_fail_validation_with_path_and_reason(tmp_path: Path, pki: CA) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    wrong_key = pki.issue("wrong.test")
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[entrypoints.secure]
address = "127.0.0.1:{free_port()}"
[entrypoints.secure.tls]
cert_file = "{tmp_path}/bad.pem"
key_file = "{wrong_key.key}"
certificates = [{{cert_file = "{pki.folder}/a.test.pem", key_file = "{wrong_key.key}"}}]
""")
    out = subprocess.run([*BINARY, "validate", "--config", str(config)], capture_output=True, text=True)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert f"entrypoints.secure.tls.cert_file: cannot use certificate '{tmp_path}/bad.pem'" in text
    assert "entrypoints.secure.tls.certificates[0].cert_file: cannot use certificate" in text
    assert "KEY_VALUES_MISMATCH" in text or "key values mismatch" in text.lower()


def test_https_backends_verify_with_the_service_ca_or_skip_when_told(gw: Gateway) -> None:
    assert httpx.get(f"{gw.url}/upstream-tls/verified").json() == {"tls": True, "path": "/upstream-tls/verified"}
    assert httpx.get(f"{gw.url}/upstream-tls/insecure").json()["tls"] is True
    r = httpx.get(f"{gw.url}/upstream-tls/system-store")      # the test CA is not in the system store
    assert r.status_code == 502
