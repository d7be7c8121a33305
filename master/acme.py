"""ACME certificates (RFC 8555: Let's Encrypt, pebble, any compatible CA), obtained and renewed in the master.

Configured by the top-level ``[acme]`` table; certificates are served on every entrypoint with
``tls.acme = true``. Each entry of ``acme.domains`` is one certificate (``"a.example,www.a.example"`` puts
several names in one; ``"*.example"`` needs ``challenge = "dns-01"``). Left empty, the domains come from the
routers served on those entrypoints (``domains_from_routers``), and follow them on every reload. The protocol
is the ``acme`` library's (JWS, nonces, orders); this module only decides when and wires the challenges:

* **HTTP-01**: the key authorizations are sent to every worker over the control channel (and given to new
  workers at boot); workers answer ``GET /.well-known/acme-challenge/<token>`` on every plain-HTTP
  entrypoint through the internal router ``acme-http01@internal`` (highest priority) that the master adds
  to each generation.
* **DNS-01**: ``acme.dns_provider`` publishes the records itself (master/acme_dns/: ``rfc2136``, a TSIG-signed
  dynamic update), adding each value and waiting until the zone's authoritative servers answer with it before the
  CA is told to look; or ``acme.dns_hook.command`` is run as ``command add|remove <fqdn> <value>`` (also in the
  environment as ``A3S_ACME_ACTION``, ``A3S_ACME_FQDN``, ``A3S_ACME_VALUE``, ``A3S_ACME_DOMAIN``), and/or
  ``acme.dns_hook.webhook`` gets ``POST {"action", "host", "fqdn", "value", "domain"}`` (``host`` is the
  FQDN with a trailing dot).

Storage (``storage_path``, created 0700): ``account.key`` and every ``certs/<name>/key.pem`` are written
0600, atomically (write + rename), and loaded at start, so a restart serves the stored certificates at once.
Until a certificate exists an entrypoint serves a self-signed placeholder (``certs/_placeholder``), so the
TLS listener can always start. After each issuance or renewal the master publishes a new generation; the
workers' certificate stores re-read the files (established connections keep their session).

Renewal: every ``check_interval`` a certificate with fewer than ``renewal_days`` days left (or none) is
ordered again; a failure is logged, shown in ``/api/gateway/health`` (``control.acme``) and retried after
``retry_interval``, doubling up to a day, while the old certificate keeps being served.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ..shared import log as gwlog
from ..shared.rules import parse_rule
from . import acme_dns
from .background import Background

log = gwlog.get("master.acme")

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
CHALLENGE_ROUTER = "acme-http01@internal"
CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
MAX_BACKOFF = 86400.0


_DNS_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}")


def domains_from_routers(config: dict[str, Any]) -> list[str]:
    """What ``acme.domains`` means when it is left empty: one certificate per router served on a ``tls.acme``
    entrypoint, for the hosts its rule requires (``Host(`a.example`) || Host(`b.example`)`` gives one
    certificate for both), as Traefik does for a router with a certificate resolver and no domains. A rule that
    can match any host gives none; so do names a CA will not issue for (IP addresses, single labels)."""
    entrypoints = config.get("entrypoints", {})
    http = [name for name, ep in entrypoints.items() if ep.get("protocol", "http") == "http"]
    acme = {name for name in http if (entrypoints[name].get("tls") or {}).get("acme")}
    specs: list[str] = []
    for router in config.get("routers", {}).values():
        if acme.isdisjoint(router.get("entrypoints") or http):
            continue
        hosts = parse_rule(router["rule"]).hosts or ()
        names = sorted(h for h in hosts if _DNS_NAME.fullmatch(h) and not _is_ip(h))
        spec = ",".join(names)
        if names and spec not in specs:
            specs.append(spec)
    return specs


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _write_private(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _dir_name(names: list[str]) -> str:
    return names[0].replace("*", "_wildcard")


def not_after(cert_file: str) -> datetime.datetime | None:
    try:
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificates(f.read())[0]
    except (OSError, ValueError, IndexError):
        return None
    return cert.not_valid_after_utc


def self_signed(names: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a3s-gateway ACME placeholder")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class Order:
    """One certificate: its names, files and status."""

    def __init__(self, storage: str, spec: str) -> None:
        self.names = [n.strip().lower() for n in spec.split(",") if n.strip()]
        self.dir = os.path.join(storage, "certs", _dir_name(self.names))
        self.cert_file = os.path.join(self.dir, "cert.pem")
        self.key_file = os.path.join(self.dir, "key.pem")
        self.status = "pending"
        self.last_error: str | None = None
        self.failures = 0
        self.next_try = 0.0
        self.issued_at: float | None = None

    def expires(self) -> datetime.datetime | None:
        return not_after(self.cert_file) if os.path.exists(self.key_file) else None

    def due(self, renewal_days: int) -> bool:
        expires = self.expires()
        if expires is None:
            return True
        left = expires - datetime.datetime.now(datetime.UTC)
        return left < datetime.timedelta(days=renewal_days)


class AcmeManager(Background):
    task_name = "acme"

    def __init__(self, settings: dict[str, Any], publish_tokens: Callable[[dict[str, str]], None],
                 on_change: Callable[[str], Awaitable[None]]) -> None:
        self.settings = settings
        self.publish_tokens = publish_tokens
        self.on_change = on_change
        self.storage = os.path.abspath(settings["storage_path"])
        self.orders = [Order(self.storage, d) for d in settings["domains"]]
        self.tokens: dict[str, str] = {}
        self._client: Any = None
        self.placeholder = (os.path.join(self.storage, "certs", "_placeholder", "cert.pem"),
                            os.path.join(self.storage, "certs", "_placeholder", "key.pem"))

    @property
    def key(self) -> tuple:
        s = self.settings
        return (s["directory_url"], s["staging"], s["storage_path"], s["email"], s["ca_bundle"], s["challenge"])

    # -- files
    def prepare(self) -> None:
        """Create the storage folder and the placeholder certificate (synchronous, at start)."""
        os.makedirs(os.path.join(self.storage, "certs"), mode=0o700, exist_ok=True)
        os.chmod(self.storage, 0o700)
        cert_file, key_file = self.placeholder
        if not_after(cert_file) is None or not os.path.exists(key_file):
            os.makedirs(os.path.dirname(cert_file), mode=0o700, exist_ok=True)
            names = [n for o in self.orders for n in o.names] or ["localhost"]
            cert, key = self_signed(names)
            _write_private(key_file, key)
            _write_private(cert_file, cert)
        for order in self.orders:
            if order.expires() is not None:
                order.status = "valid"
        if not self.orders:
            log.warning("no ACME domains: acme.domains is empty and no router served on a tls.acme entrypoint has "
                        "a Host rule; the placeholder certificate is served")

    def certificates(self) -> list[dict[str, str]]:
        """The certificate/key pairs TLS entrypoints with ``acme = true`` serve: every issued one, or the
        placeholder while none is."""
        issued = [{"cert_file": o.cert_file, "key_file": o.key_file} for o in self.orders if o.expires()]
        return issued or [{"cert_file": self.placeholder[0], "key_file": self.placeholder[1]}]

    def snapshot(self) -> list[dict[str, Any]]:
        out = []
        for o in self.orders:
            expires = o.expires()
            out.append({"names": o.names, "status": o.status, "not_after": expires.isoformat() if expires else None,
                        "last_error": o.last_error, "failures": o.failures, "cert_file": o.cert_file})
        return out

    # -- running
    async def _run(self) -> None:
        while True:
            changed = False
            for order in self.orders:
                if time.monotonic() < order.next_try or not order.due(self.settings["renewal_days"]):
                    continue
                try:
                    await asyncio.to_thread(self._issue, order, asyncio.get_running_loop())
                except Exception as e:  # noqa: BLE001 — logged, shown in health, retried with backoff
                    order.failures += 1
                    order.status = "error"
                    order.last_error = f"{type(e).__name__}: {e}"
                    delay = min(MAX_BACKOFF, self.settings["retry_interval"] * 2 ** (order.failures - 1))
                    order.next_try = time.monotonic() + delay
                    log.error(f"ACME order for {order.names} failed, retrying in {delay:.0f}s: {order.last_error}")
                else:
                    order.failures, order.last_error, order.status = 0, None, "valid"
                    order.issued_at = time.time()
                    order.next_try = time.monotonic() + self.settings["check_interval"]
                    changed = True
                    log.info("certificate issued", extra={"fields": {"names": order.names,
                                                                       "not_after": str(order.expires())}})
            if changed:
                await self.on_change("acme")
            waits = [o.next_try - time.monotonic() for o in self.orders] + [self.settings["check_interval"]]
            await asyncio.sleep(max(0.5, min(waits)))

    # -- the protocol (runs in a thread: the acme library is blocking)
    def _client_for(self) -> Any:
        if self._client is not None:
            return self._client
        import josepy as jose
        from acme import client, errors, messages

        key_file = os.path.join(self.storage, "account.key")
        if os.path.exists(key_file):
            with open(key_file, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), None)
        else:
            key = rsa.generate_private_key(65537, 2048)
            _write_private(key_file, key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
        s = self.settings
        url = s["directory_url"] or (LETS_ENCRYPT_STAGING if s["staging"] else LETS_ENCRYPT)
        net = client.ClientNetwork(jose.JWKRSA(key=key), user_agent="a3s-gateway",
                                   verify_ssl=s["ca_bundle"] or True)
        acme = client.ClientV2(client.ClientV2.get_directory(url, net), net)
        reg = messages.NewRegistration.from_data(email=s["email"], terms_of_service_agreed=True)
        try:
            acme.new_account(reg)
        except errors.ConflictError as e:       # the key already has an account: use it
            net.account = messages.RegistrationResource(uri=e.location, body=messages.Registration())
        self._client = acme
        return acme

    def _issue(self, order: Order, loop: asyncio.AbstractEventLoop) -> None:
        from acme import challenges, crypto_util

        acme = self._client_for()
        os.makedirs(order.dir, mode=0o700, exist_ok=True)
        pkey = ec.generate_private_key(ec.SECP256R1())
        pkey_pem = pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        acme_order = acme.new_order(crypto_util.make_csr(pkey_pem, order.names))
        cleanups: list[Callable[[], None]] = []
        provider = acme_dns.make(self.settings["dns_provider"]) if self.settings.get("dns_provider") else None
        records: list[tuple[str, str]] = []
        try:
            want = challenges.DNS01 if self.settings["challenge"] == "dns-01" else challenges.HTTP01
            answers = []
            for authz in acme_order.authorizations:
                if authz.body.status.name == "valid":
                    continue
                chall = next((c for c in authz.body.challenges if isinstance(c.chall, want)), None)
                if chall is None:
                    raise RuntimeError(f"the CA offers no {self.settings['challenge']} challenge for "
                                       f"{authz.body.identifier.value}")
                response, validation = chall.response_and_validation(acme.net.key)
                domain = authz.body.identifier.value
                if want is challenges.HTTP01:
                    token = chall.chall.encode("token")
                    self.tokens[token] = validation
                    cleanups.append(lambda t=token: self.tokens.pop(t, None))
                else:
                    fqdn = chall.chall.validation_domain_name(domain)
                    if provider is not None:
                        provider.present(fqdn, validation)
                        cleanups.append(lambda p=provider, f=fqdn, v=validation: p.cleanup(f, v))
                        records.append((fqdn, validation))
                    else:
                        self._dns_hook("add", fqdn, validation, domain)
                        cleanups.append(lambda f=fqdn, v=validation, d=domain: self._dns_hook("remove", f, v, d))
                answers.append((chall, response))
            if want is challenges.HTTP01:
                loop.call_soon_threadsafe(self.publish_tokens, dict(self.tokens))
                time.sleep(0.2)   # let the workers read the tokens before the CA asks for them
            elif provider is not None and records:
                provider.wait_propagated(records)
            elif answers and self.settings["dns_hook"]["propagation_wait"]:
                time.sleep(self.settings["dns_hook"]["propagation_wait"])
            for chall, response in answers:
                acme.answer_challenge(chall, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=120)
            finished = acme.poll_and_finalize(acme_order, deadline=deadline)
        finally:
            for cleanup in cleanups:
                try:
                    cleanup()
                except Exception as e:  # noqa: BLE001 — a failed cleanup must not hide the order's result
                    log.warning(f"ACME challenge cleanup failed: {e}")
            if want is challenges.HTTP01:
                loop.call_soon_threadsafe(self.publish_tokens, dict(self.tokens))
        _write_private(order.key_file, pkey_pem)
        _write_private(order.cert_file, finished.fullchain_pem.encode())

    def _dns_hook(self, action: str, fqdn: str, value: str, domain: str) -> None:
        hook = self.settings.get("dns_hook") or {}
        if not hook.get("command") and not hook.get("webhook"):
            raise RuntimeError("challenge = 'dns-01' needs acme.dns_provider, acme.dns_hook.command or "
                               "acme.dns_hook.webhook")
        if hook.get("command"):
            env = {**os.environ, "A3S_ACME_ACTION": action, "A3S_ACME_FQDN": fqdn, "A3S_ACME_VALUE": value,
                   "A3S_ACME_DOMAIN": domain}
            done = subprocess.run(f'{hook["command"]} {action} {fqdn} {value}', shell=True, env=env,
                                  capture_output=True, timeout=120, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"dns_hook.command {action} exited {done.returncode}: "
                                   f"{done.stderr.decode(errors='replace')[-500:]}")
        if hook.get("webhook"):
            body = json.dumps({"action": action, "host": fqdn + ".", "fqdn": fqdn, "value": value,
                               "domain": domain}).encode()
            req = urllib.request.Request(hook["webhook"], data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"dns_hook.webhook answered {resp.status}")
