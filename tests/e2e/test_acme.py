"""ACME against a real CA: Debian's pebble (with pebble-challtestsrv as its DNS), through the real binary."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from harness import free_port, port_open, wait_until

pytestmark = pytest.mark.skipif(shutil.which("pebble") is None or shutil.which("pebble-challtestsrv") is None,
                                reason="pebble is not installed (apt-get install pebble; .ci/install-deps does it)")


class Pebble:
    """pebble, asking pebble-challtestsrv for DNS unless ``dnsserver`` ("ip:port") names another server."""

    def __init__(self, tmp: Path, dnsserver: str | None = None) -> None:
        self.tmp = tmp
        self.port, self.mgmt, self.http_port = free_port(), free_port(), free_port()
        self.dns_port, self.dns_mgmt = free_port(), free_port()
        self.ca = tmp / "pebble-cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(tmp / "pebble-key.pem"), "-out", str(self.ca), "-days", "30", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
        (tmp / "pebble.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": str(self.ca), "privateKey": str(tmp / "pebble-key.pem"), "httpPort": self.http_port,
            "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
        self.dns = subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
             f"127.0.0.1:{self.dns_port}", "-management", f"127.0.0.1:{self.dns_mgmt}", "-http01", "",
             "-https01", "", "-tlsalpn01", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self.log = open(tmp / "pebble.log", "wb")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(["pebble", "-config", str(tmp / "pebble.json"), "-dnsserver",
                                      dnsserver or f"127.0.0.1:{self.dns_port}"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(self.port) and port_open(self.dns_mgmt), 15, what="pebble")
        self.directory = f"https://127.0.0.1:{self.port}/dir"

    def stop(self) -> None:
        for p in (self.proc, self.dns):
            p.terminate()
            p.wait(5)
        self.log.close()


@pytest.fixture
def pebble(tmp_path):
    p = Pebble(tmp_path)
    yield p
    p.stop()


CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.websecure]
address = "127.0.0.1:{secure}"
tls = {acme = true}
[admin]
address = "127.0.0.1:{admin}"
[routers.r]
rule = "PathPrefix(`/`)"
service = "whoami@internal"
[acme]
email = "ops@example.org"
domains = ["DOMAIN"]
directory_url = "DIRECTORY"
ca_bundle = "CA"
storage_path = "STORAGE"
check_interval = "CHECK"
renewal_days = RENEWAL
retry_interval = "1s"
CHALLENGE
"""


def served_certificate(port: int, name: str) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def issuer(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string()


def config(pebble: Pebble, tmp: Path, domain: str, renewal: int = 30, check: str = "12h",
           challenge: str = "") -> str:
    return (CONFIG.replace("DOMAIN", domain).replace("DIRECTORY", pebble.directory).replace("CA", str(pebble.ca))
            .replace("STORAGE", str(tmp / "acme")).replace("CHECK", check).replace("RENEWAL", str(renewal))
            .replace("CHALLENGE", challenge))


def test_http01_certificate_is_issued_and_served_without_restart(gateway, pebble, tmp_path):
    secure = free_port()
    g = gateway(config(pebble, tmp_path, "acme.gateway.test"), workers=2, web=pebble.http_port, secure=secure)
    # the placeholder is served at once, the CA's certificate as soon as it is issued
    wait_until(lambda: "Pebble" in issuer(served_certificate(secure, "acme.gateway.test")), 60,
               what="pebble certificate served")
    cert = served_certificate(secure, "acme.gateway.test")
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert names == ["acme.gateway.test"]
    status = g.health()["control"]["acme"][0]
    assert status["status"] == "valid" and status["not_after"]
    storage = tmp_path / "acme"
    for f in [storage / "account.key", storage / "certs/acme.gateway.test/key.pem",
              storage / "certs/acme.gateway.test/cert.pem"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # the challenge route answers only pending tokens
    assert httpx.get(g.url + "/.well-known/acme-challenge/unknown").status_code == 404
    # every worker serves it: many fresh connections
    assert all("Pebble" in issuer(served_certificate(secure, "acme.gateway.test")) for _ in range(10))
    # a restart loads the stored certificate at once (no new order)
    g.stop()
    g2 = gateway(config(pebble, tmp_path, "acme.gateway.test"), workers=1, web=free_port(), secure=secure)
    assert "Pebble" in issuer(served_certificate(secure, "acme.gateway.test"))
    assert g2.health()["control"]["acme"][0]["status"] == "valid"


def test_certificate_is_renewed_inside_the_renewal_window(gateway, pebble, tmp_path):
    secure = free_port()
    # renewal_days larger than pebble's certificate lifetime: every check renews
    gateway(config(pebble, tmp_path, "renew.gateway.test", renewal=100000, check="1s"), workers=2,
            web=pebble.http_port, secure=secure)
    first = wait_until(lambda: (c := served_certificate(secure, "renew.gateway.test")) and "Pebble" in issuer(c)
                       and c, 60, what="first certificate")
    wait_until(lambda: served_certificate(secure, "renew.gateway.test").serial_number != first.serial_number, 60,
               what="renewed certificate served")


def test_dns01_wildcard_through_the_command_hook(gateway, pebble, tmp_path):
    secure = free_port()
    hook = tmp_path / "hook.sh"
    hook.write_text(f"""#!/bin/sh
# $1 = add|remove, $2 = fqdn, $3 = value
if [ "$1" = add ]; then
  curl -sf -X POST -d "{{\\"host\\":\\"$2.\\",\\"value\\":\\"$3\\"}}" http://127.0.0.1:{pebble.dns_mgmt}/set-txt
else
  curl -sf -X POST -d "{{\\"host\\":\\"$2.\\"}}" http://127.0.0.1:{pebble.dns_mgmt}/clear-txt
fi
""")
    hook.chmod(0o755)
    challenge = f'challenge = "dns-01"\ndns_hook = {{command = "{hook}"}}\n'
    gateway(config(pebble, tmp_path, "*.wild.gateway.test", challenge=challenge), workers=2, web=free_port(),
            secure=secure)
    wait_until(lambda: "Pebble" in issuer(served_certificate(secure, "a.wild.gateway.test")), 60,
               what="wildcard certificate served")
    san = served_certificate(secure, "b.wild.gateway.test").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert san == ["*.wild.gateway.test"]


ROUTED = """
[routers.app]
rule = "Host(`a.routed.gateway.test`) || Host(`www.a.routed.gateway.test`)"
service = "whoami@internal"
entrypoints = ["websecure"]
[routers.plain-only]
rule = "Host(`plain.routed.gateway.test`)"
service = "whoami@internal"
entrypoints = ["web"]
"""

ADDED = """
[routers.added]
rule = "Host(`b.routed.gateway.test`) && PathPrefix(`/b`)"
service = "whoami@internal"
"""


def san(cert: x509.Certificate) -> list[str]:
    return sorted(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def test_empty_domains_come_from_the_routers_host_rules_and_follow_a_reload(gateway, pebble, tmp_path):
    """One certificate per router on the tls.acme entrypoint, for its Host names; ``PathPrefix(`/`)`` (any host)
    and a router only on the plain entrypoint give none."""
    secure = free_port()
    text = config(pebble, tmp_path, "unused").replace('domains = ["unused"]\n', "") + ROUTED
    g = gateway(text, workers=2, web=pebble.http_port, secure=secure)
    wait_until(lambda: "Pebble" in issuer(served_certificate(secure, "a.routed.gateway.test")), 60,
               what="certificate for the router's hosts served")
    assert san(served_certificate(secure, "www.a.routed.gateway.test")) == [
        "a.routed.gateway.test", "www.a.routed.gateway.test"]
    assert [o["names"] for o in g.health()["control"]["acme"]] == [
        ["a.routed.gateway.test", "www.a.routed.gateway.test"]]
    g.reload(text + ADDED)
    # until then, that name gets the certificate of the other router (the first one)
    wait_until(lambda: san(served_certificate(secure, "b.routed.gateway.test")) == ["b.routed.gateway.test"], 60,
               what="certificate for the added router served")
    assert "Pebble" in issuer(served_certificate(secure, "b.routed.gateway.test"))
    assert "Pebble" in issuer(served_certificate(secure, "a.routed.gateway.test"))   # kept, not ordered again
