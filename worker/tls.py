"""TLS for entrypoints: server contexts chosen by SNI, rebuilt when certificate files change.

One ``CertStore`` per TLS entrypoint (and per TCP entrypoint that terminates TLS). The listening server is
created once with ``store.front``, a context whose ``sni_callback`` runs for every ClientHello (with or without
SNI) and switches the connection to the context of the matching certificate: an exact name first, then a
``*.parent`` wildcard (one label, as browsers match), then the default certificate (``tls.cert_file`` or, when
absent, the first of ``tls.certificates``). Because every connection is switched, replacing the store's table
is all a certificate reload needs: new handshakes see the new certificates, established connections keep the
session they negotiated, and the listening socket is never touched.

Every context of a store carries the same settings (minimum version, ALPN list, client-certificate
verification), so what a client negotiates never depends on which certificate it was shown.

Invariant: a reload that fails (a file half-written, a key that does not match) keeps the previous table and
is logged; it never breaks the entrypoint. Config validation has already proved the files loadable once.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..shared import log as gwlog

log = gwlog.get("worker.tls")

HTTP_ALPN = ["h2", "http/1.1"]
MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def certificate_names(cert_file: str) -> list[str]:
    """The DNS names a certificate is valid for (SAN entries, else the subject CN), lowercased."""
    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificates(f.read())[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [n.lower() for n in names]


class CertStore:
    """The certificates of one entrypoint and the SNI switch in front of them."""

    def __init__(self, entrypoint: str, tls: dict[str, Any], alpn: list[str] | None) -> None:
        self.entrypoint = entrypoint
        self.tls = tls
        self.alpn = alpn
        pairs = [(c["cert_file"], c["key_file"]) for c in tls.get("certificates") or []]
        if tls.get("cert_file") and tls.get("key_file"):
            pairs.insert(0, (tls["cert_file"], tls["key_file"]))
        self.pairs = pairs
        self.files = [f for pair in pairs for f in pair] + ([tls["client_ca_file"]] if tls.get("client_ca_file")
                                                            else [])
        self.mtimes = self._mtimes()
        self.on_reload: list[Callable[[], None]] = []     # the entrypoint's HTTP/3 side (http3/server.py)
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcard: dict[str, ssl.SSLContext] = {}
        self.default: ssl.SSLContext = None  # type: ignore[assignment]
        self._build()
        self.front = self._context(*pairs[0])
        self.front.sni_callback = self._select

    def _context(self, cert_file: str, key_file: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = MIN_VERSIONS[self.tls.get("min_version") or "1.2"]
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        ctx.load_cert_chain(cert_file, key_file)
        if self.alpn:
            ctx.set_alpn_protocols(self.alpn)
        if self.tls.get("client_ca_file"):
            ctx.load_verify_locations(self.tls["client_ca_file"])
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _build(self) -> None:
        exact: dict[str, ssl.SSLContext] = {}
        wildcard: dict[str, ssl.SSLContext] = {}
        default = None
        for cert_file, key_file in self.pairs:
            ctx = self._context(cert_file, key_file)
            default = default or ctx
            for name in certificate_names(cert_file):
                if name.startswith("*."):
                    wildcard.setdefault(name[2:], ctx)
                else:
                    exact.setdefault(name, ctx)
        self.exact, self.wildcard, self.default = exact, wildcard, default  # type: ignore[assignment]

    def _select(self, conn: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        ctx = self.default
        if server_name:
            name = server_name.lower()
            ctx = self.exact.get(name) or self.wildcard.get(name.partition(".")[2]) or ctx
        conn.context = ctx

    def _mtimes(self) -> list[float]:
        out = []
        for f in self.files:
            try:
                out.append(os.stat(f).st_mtime_ns)
            except OSError:
                out.append(-1)
        return out

    def reload(self, only_if_changed: bool) -> bool:
        """Re-read the certificate files (when they changed on disk, or always); True when the table changed."""
        mtimes = self._mtimes()
        if only_if_changed and mtimes == self.mtimes:
            return False
        self.mtimes = mtimes
        try:
            self._build()
        except (OSError, ssl.SSLError, ValueError) as e:
            log.error(f"entrypoint {self.entrypoint}: certificate reload failed, keeping the previous ones: {e}")
            return False
        for reloaded in self.on_reload:
            reloaded()
        return True


def client_context(ca_file: str | None = None, insecure_skip_verify: bool = False,
                   alpn: list[str] | None = None) -> ssl.SSLContext:
    """TLS settings for https:// backends: the system store (or ``ca_file``), verification unless skipped."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
