"""``kubernetes.io/tls`` Secrets → certificate files the entrypoints' SNI store loads.

The config names certificates by file, so a Secret's ``tls.crt``/``tls.key`` are written to
``certs_dir`` under a name made of the content's hash. A rotated Secret therefore gives *new* paths, which makes
the next generation differ and the workers load the new pair for new handshakes (established connections keep
the old one); an unchanged Secret gives the same paths and no rebuild. Files no generation names any more are
removed after each publish. Files are written 0600 (they hold private keys) by a rename, so a worker never
reads half a file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

from .endpoints import BackendError


def secret_pair(secret: dict[str, Any] | None, namespace: str, name: str) -> tuple[bytes, bytes]:
    """The PEM certificate chain and key of a TLS Secret (``BackendError`` saying why not)."""
    if secret is None:
        raise BackendError(f"TLS secret {namespace}/{name} not found")
    data = secret.get("data") or {}
    try:
        cert, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
    except (KeyError, binascii.Error, TypeError) as e:
        raise BackendError(f"TLS secret {namespace}/{name} needs base64 'tls.crt' and 'tls.key'") from e
    return cert, key


class CertFiles:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.written: set[str] = set()

    def pair(self, cert: bytes, key: bytes) -> dict[str, str]:
        """Where this certificate and key live on disk (written now if new)."""
        digest = hashlib.sha256(cert + b"\0" + key).hexdigest()[:16]
        out = {"cert_file": os.path.join(self.directory, f"{digest}.crt"),
               "key_file": os.path.join(self.directory, f"{digest}.key")}
        for path, content in ((out["cert_file"], cert), (out["key_file"], key)):
            if path not in self.written or not os.path.exists(path):
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                tmp = f"{path}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                os.replace(tmp, path)
                self.written.add(path)
        return out

    def prune(self, keep: set[str]) -> None:
        """Remove the files this provider wrote that ``keep`` does not name."""
        for path in sorted(self.written - keep):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self.written.discard(path)
