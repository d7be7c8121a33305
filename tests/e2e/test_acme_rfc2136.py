"""ACME DNS-01 through RFC 2136: the gateway publishes the TXT records in Debian's bind9 (a TSIG-signed dynamic
update), and pebble, asking that bind9, issues a wildcard-plus-bare-domain certificate; through the real binary."""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from cryptography import x509
from harness import free_port, port_open, wait_until
from test_acme import Pebble, config, issuer, served_certificate

ZONE = "example.test"


class Bind:
    """named, authoritative only for ``example.test`` on 127.0.0.1:``port``, updates allowed with ``a3s-key``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        (tmp / f"{ZONE}.zone").write_text(f"""$TTL 60
@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60
@ IN NS ns.{ZONE}.
ns IN A 127.0.0.1
@ IN A 127.0.0.1
* IN A 127.0.0.1
""")
        (tmp / "named.conf").write_text(f"""
options {{
    directory "{tmp}"; pid-file "{tmp}/named.pid"; session-keyfile "{tmp}/session.key";
    listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
    recursion no; allow-query {{ any; }}; dnssec-validation no;
}};
controls {{ }};
key "a3s-key" {{ algorithm hmac-sha256; secret "{self.secret}"; }};
zone "{ZONE}" {{ type primary; file "{tmp}/{ZONE}.zone"; journal "{tmp}/{ZONE}.jnl";
    allow-update {{ key a3s-key; }}; }};
""")
        self.log = open(tmp / "named.log", "wb")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(["/usr/sbin/named", "-g", "-u", "root", "-c", str(tmp / "named.conf")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(self.port), 15, what="named listening")

    def txt(self, name: str) -> set[str]:
        reply = dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=self.port, timeout=2)
        return {b"".join(r.strings).decode() for rrset in reply.answer for r in rrset}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    (tmp_path / "bind").mkdir()
    b = Bind(tmp_path / "bind")
    yield b
    b.stop()


def provider_toml(bind: Bind, secret: str) -> str:
    return (f'challenge = "dns-01"\n[acme.dns_provider]\ntype = "rfc2136"\nnameserver = "127.0.0.1:{bind.port}"\n'
            f'tsig_key_name = "a3s-key"\ntsig_secret = "{secret}"\npolling_interval = "100ms"\n'
            f'check_nameservers = ["127.0.0.1:{bind.port}"]\n')


def test_wildcard_and_bare_domain_are_issued_through_rfc2136_and_the_records_removed(gateway, bind, tmp_path):
    pebble = Pebble(tmp_path, dnsserver=f"127.0.0.1:{bind.port}")
    try:
        secure = free_port()
        text = config(pebble, tmp_path, f"*.{ZONE},{ZONE}", challenge=provider_toml(bind, bind.secret))
        gateway(text, workers=2, web=free_port(), secure=secure)
        wait_until(lambda: "Pebble" in issuer(served_certificate(secure, f"a.{ZONE}")), 60,
                   what="certificate issued through bind9")
        names = served_certificate(secure, ZONE).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert sorted(names) == sorted([f"*.{ZONE}", ZONE])
        # both authorizations' values were added, then each removed: nothing is left behind
        wait_until(lambda: bind.txt(f"_acme-challenge.{ZONE}") == set(), 10, what="TXT records removed")
    finally:
        pebble.stop()


def test_a_wrong_tsig_key_is_reported_and_no_record_is_written(gateway, bind, tmp_path):
    pebble = Pebble(tmp_path, dnsserver=f"127.0.0.1:{bind.port}")
    try:
        wrong = base64.b64encode(secrets.token_bytes(32)).decode()
        g = gateway(config(pebble, tmp_path, ZONE, challenge=provider_toml(bind, wrong)), workers=2,
                    web=free_port(), secure=free_port())
        error = wait_until(lambda: g.health()["control"]["acme"][0]["last_error"], 30, what="order failure")
        assert "rejected the TSIG key 'a3s-key'" in error
        assert wrong not in str(g.health())          # the secret is redacted
        assert bind.txt(f"_acme-challenge.{ZONE}") == set()
    finally:
        pebble.stop()
