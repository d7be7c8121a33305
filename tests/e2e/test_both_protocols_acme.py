"""The ACME HTTP-01 challenge answer over HTTP/1.1 and h2c, through the real binary (two workers).

The master gets its challenge token from a scripted ACME CA in the test process (directory, nonces, account,
one order with one HTTP-01 challenge); the CA keeps the authorization pending, so the master keeps the token
published to the workers, until the module is done, then fails it so the master's ACME thread ends at once.
Only plain entrypoints get the challenge router (the CA validates over http://), so there is no TLS variant.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import josepy as jose
import pytest
from aiohttp import web
from harness import Gateway, free_port, wait_until
from mw_support import assert_error
from proto_backends import LoopThread

DOMAIN = "acme.both.test"
CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.r]
rule = "PathPrefix(`/`)"
service = "whoami@internal"
[acme]
email = "ops@example.org"
domains = ["%(domain)s"]
directory_url = "%(directory)s"
storage_path = "%(storage)s"
retry_interval = "1h"
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ScriptedCA(LoopThread):
    """Just enough of RFC 8555 for the ``acme`` client: nothing is verified, every answer carries a nonce."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = _b64(secrets.token_bytes(32))
        self.thumbprint: str | None = None          # of the account key, from the newAccount JWS
        self.answered = threading.Event()           # the master told us the token is served
        self.released = False                       # then the authorization fails

        def reply(body: dict[str, Any] | None, status: int = 200, **headers: str) -> web.Response:
            headers = {"Replay-Nonce": _b64(secrets.token_bytes(16)), **headers}
            if body is None:
                return web.Response(status=status, headers=headers)
            return web.json_response(body, status=status, headers=headers)

        def challenge() -> dict[str, Any]:
            return {"type": "http-01", "url": f"{self.base}/chall/1", "token": self.token, "status": "pending"}

        async def directory(request: web.Request) -> web.Response:
            return reply({"newNonce": f"{self.base}/nonce", "newAccount": f"{self.base}/acct",
                          "newOrder": f"{self.base}/order", "revokeCert": f"{self.base}/revoke",
                          "keyChange": f"{self.base}/key-change"})

        async def nonce(request: web.Request) -> web.Response:
            return reply(None)

        async def account(request: web.Request) -> web.Response:
            protected = json.loads(_unb64((await request.json())["protected"]))
            self.thumbprint = _b64(jose.JWK.from_json(protected["jwk"]).thumbprint())
            return reply({"status": "valid", "contact": ["mailto:ops@example.org"]}, 201,
                         Location=f"{self.base}/acct/1")

        async def order(request: web.Request) -> web.Response:
            return reply({"status": "pending", "identifiers": [{"type": "dns", "value": DOMAIN}],
                          "authorizations": [f"{self.base}/authz/1"], "finalize": f"{self.base}/finalize/1"},
                         201, Location=f"{self.base}/order/1")

        async def authz(request: web.Request) -> web.Response:
            chall = challenge()
            if self.released:
                chall = {**chall, "status": "invalid",
                         "error": {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "test over"}}
            return reply({"identifier": {"type": "dns", "value": DOMAIN},
                          "status": "invalid" if self.released else "pending", "challenges": [chall]})

        async def answer(request: web.Request) -> web.Response:
            self.answered.set()
            return reply(challenge(), Link=f'<{self.base}/authz/1>;rel="up"')

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/dir", directory)
            app.router.add_route("*", "/nonce", nonce)
            app.router.add_post("/acct", account)
            app.router.add_post("/order", order)
            app.router.add_post("/authz/1", authz)
            app.router.add_post("/chall/1", answer)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        self.run(start())

    @property
    def key_authorization(self) -> str:
        assert self.thumbprint is not None, "the master never registered an account"
        return f"{self.token}.{self.thumbprint}"

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        super().stop()


@dataclass
class Env:
    gw: Gateway
    ca: ScriptedCA


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ca = ScriptedCA()
    tmp = tmp_path_factory.mktemp("acme")
    g = Gateway(CONFIG % {"domain": DOMAIN, "directory": f"{ca.base}/dir", "storage": tmp / "storage"}, tmp,
                workers=2)
    try:
        assert ca.answered.wait(20), "the master never answered the challenge:\n" + g.logs()
        yield Env(g, ca)
    finally:
        ca.released = True           # the master's poll sees the authorization fail and its thread ends
        wait_until(lambda: "ACME order" in g.logs(), 10, what="the master gave the order up")
        g.stop()
        ca.stop()


@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_acme_http01_challenge_is_answered_with_the_key_authorization(env: Env, proto: str) -> None:
    """Every worker answers the token's URL with the key authorization, as text, whatever the protocol (over h2c
    it used to fall through to the catch-all router: the whoami echo)."""
    for _ in range(4):               # new connections, so both workers answer
        with httpx.Client(http1=proto == "http1", http2=proto == "h2c", timeout=5) as c:
            r = c.get(f"{env.gw.url}/.well-known/acme-challenge/{env.ca.token}")
        assert r.http_version == ("HTTP/1.1" if proto == "http1" else "HTTP/2")
        assert (r.status_code, r.text) == (200, env.ca.key_authorization)
        assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_acme_http01_unknown_token_is_404_json(env: Env, proto: str) -> None:
    """A token the master has not published is the gateway's 404, not a fall-through to the catch-all router."""
    with httpx.Client(http1=proto == "http1", http2=proto == "h2c", timeout=5) as c:
        r = c.get(f"{env.gw.url}/.well-known/acme-challenge/not-a-token")
    assert r.http_version == ("HTTP/1.1" if proto == "http1" else "HTTP/2")
    assert_error(r, 404, {"error": "No route matched"})
