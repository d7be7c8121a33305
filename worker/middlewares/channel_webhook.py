"""``channel-webhook``: a chat platform's inbound webhook, verified, answered or normalized and forwarded.

One middleware instance serves one ``platform`` (``slack``, ``discord``, ``telegram``, ``feishu`` (``lark``),
``dingtalk``, ``wecom`` (``wechat``), ``webchat`` (``web``)). Per request:

1. the body is read whole (``body_buffer.read_body``, at most ``max_body_bytes``, else 413); nothing else in
   the gateway buffers bodies;
2. the platform's signature is verified, and its timestamp must be within ``max_age`` of now (replay window);
   a failure answers 401 ``{"error": "Invalid webhook signature", "reason": ...}`` and nothing is forwarded;
3. URL-verification handshakes are answered by the gateway (Slack ``url_verification``, Discord PING,
   Feishu ``challenge``, WeCom ``echostr``);
4. the message is normalized to the original's schema (``id``, ``channel``, ``chat_id``, ``sender_id``,
   ``sender_name``, ``content``, ``timestamp`` in ms, ``reply_to``, ``raw``) and forwarded as the request body
   (``Content-Type: application/json``, ``X-A3S-Channel: <channel>``) to the router's service.
   ``ack = "backend"`` (default) returns the backend's answer to the platform; ``ack = "immediate"`` answers
   the platform's expected 200 at once and posts the message to a backend of the service in the background.

Signatures (constant-time compares throughout):
- Slack: ``X-Slack-Signature = v0=hex(HMAC-SHA256(secret, "v0:" + X-Slack-Request-Timestamp + ":" + body))``.
- Discord: Ed25519 over ``X-Signature-Timestamp + body`` with ``public_key`` (hex), ``X-Signature-Ed25519``.
- Telegram: ``X-Telegram-Bot-Api-Secret-Token == secret`` (Telegram signs nothing, so there is no timestamp
  to check; the token is the whole proof).
- Feishu/Lark: with ``encrypt_key``: ``X-Lark-Signature = hex(SHA256(timestamp + nonce + encrypt_key + body))``
  and the ``encrypt`` envelope decrypted (AES-256-CBC, key SHA256(encrypt_key), IV = first 16 bytes); the
  verification ``token`` (``header.token`` in schema 2.0, ``token`` in 1.0) must match when configured.
- DingTalk: headers ``timestamp`` (ms) and ``sign = base64(HMAC-SHA256(secret, timestamp + "\\n" + secret))``.
- WeCom: ``msg_signature = hex(SHA1(sorted(token, timestamp, nonce, Encrypt)))`` (query string), the XML
  ``Encrypt`` element decrypted with the EncodingAESKey (AES-256-CBC, IV = key[:16], PKCS#7 to 32 bytes);
  the ``receive_id`` (corp id) is checked when configured.
- WebChat: unsigned JSON, or with ``secret``:
  ``X-Webchat-Signature = sha256=hex(HMAC-SHA256(secret, X-Webchat-Timestamp + "." + body))``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import aiohttp
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ...shared import log as gwlog
from ..chain import JSON, Middleware, Reply, error_reply, header_value
from ._support.body_buffer import forward_body, read_body
from ._support.lazy_client import LazyClient

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

log = gwlog.get("worker.ai")

CHANNELS = {"telegram": "telegram", "slack": "slack", "discord": "discord", "feishu": "feishu", "lark": "feishu",
            "dingtalk": "dingtalk", "wecom": "wecom", "wechat": "wecom", "webchat": "webchat", "web": "webchat"}


class Rejected(Exception):
    """The webhook failed verification (401)."""


def _json(body: bytes) -> dict[str, Any]:
    try:
        v = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"Invalid JSON payload: {e}") from None
    if not isinstance(v, dict):
        raise ValueError("Invalid JSON payload: expected an object")
    return v


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _int_str(v: Any) -> str:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else ""


def _opt_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return None
    return str(v) if isinstance(v, (str, int)) else None


def _aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


# ---------------------------------------------------------------- normalization (spec §11.1 field table)
def normalize(channel: str, root: dict[str, Any]) -> dict[str, Any]:
    msg: dict[str, Any] = {"channel": channel, "raw": root}
    if channel == "telegram":
        m = root["message"] if "message" in root else root
        mid = _get(m, "message_id")
        valid = isinstance(mid, int) and not isinstance(mid, bool) and mid >= 0
        msg.update(id=str(mid) if valid else str(uuid.uuid4()),
                   chat_id=_int_str(_get(m, "chat", "id")), sender_id=_int_str(_get(m, "from", "id")),
                   sender_name=_opt_str(_get(m, "from", "first_name")), content=_s(_get(m, "text")),
                   timestamp=(_get(m, "date") or 0) * 1000 if isinstance(_get(m, "date"), int) else 0,
                   reply_to=_opt_str(_get(m, "reply_to_message", "message_id")))
    elif channel == "slack":
        m = root["event"] if "event" in root else root
        ts = _s(_get(m, "ts"))
        msg.update(id=_s(m.get("client_msg_id")) if "client_msg_id" in m else ts,
                   chat_id=_s(m.get("channel")), sender_id=_s(m.get("user")), sender_name=None,
                   content=_s(m.get("text")),
                   timestamp=int(ts.split(".")[0]) * 1000 if ts.split(".")[0].isdigit() else 0,
                   reply_to=_opt_str(m.get("thread_ts")))
    elif channel == "discord":
        author = root.get("author") or _get(root, "member", "user") or root.get("user") or {}
        content = root.get("content")
        if content is None and isinstance(root.get("data"), dict):   # an interaction: the command's name
            content = root["data"].get("name")
        msg.update(id=_s(root.get("id")), chat_id=_s(root.get("channel_id")), sender_id=_s(_get(author, "id")),
                   sender_name=_opt_str(_get(author, "username")), content=_s(content), timestamp=0,
                   reply_to=_opt_str(_get(root, "message_reference", "message_id")))
    elif channel == "feishu":
        m = _get(root, "event", "message") if _get(root, "event", "message") is not None else root
        text = ""
        try:
            text = _s(orjson.loads(_s(_get(m, "content")) or "{}").get("text"))
        except (orjson.JSONDecodeError, AttributeError):
            pass
        ct = _s(_get(m, "create_time"))
        msg.update(id=_s(_get(m, "message_id")), chat_id=_s(_get(m, "chat_id")),
                   sender_id=_s(_get(root, "event", "sender", "sender_id", "open_id")), sender_name=None,
                   content=text, timestamp=int(ct) if ct.isdigit() else 0, reply_to=_opt_str(_get(m, "parent_id")))
    elif channel == "dingtalk":
        sender = root["senderStaffId"] if "senderStaffId" in root else root.get("senderId")
        msg.update(id=_s(root.get("msgId")), chat_id=_s(root.get("conversationId")), sender_id=_s(sender),
                   sender_name=_opt_str(root.get("senderNick")), content=_s(_get(root, "text", "content")),
                   timestamp=root.get("createAt") if isinstance(root.get("createAt"), int) else 0, reply_to=None)
    elif channel == "wecom":
        ct = _s(root.get("CreateTime"))
        msg.update(id=_s(root.get("MsgId")), chat_id=_s(root.get("FromUserName")),
                   sender_id=_s(root.get("FromUserName")), sender_name=None, content=_s(root.get("Content")),
                   timestamp=int(ct) * 1000 if ct.isdigit() else 0, reply_to=None)
    else:  # webchat
        msg.update(id=root["id"] if isinstance(root.get("id"), str) else str(uuid.uuid4()),
                   chat_id=_s(root.get("session_id")), sender_id=_s(root.get("user_id")),
                   sender_name=_opt_str(root.get("user_name")), content=_s(root.get("content")),
                   timestamp=root.get("timestamp") if isinstance(root.get("timestamp"), int) else 0, reply_to=None)
    return {k: msg[k] for k in ("id", "channel", "chat_id", "sender_id", "sender_name", "content", "timestamp",
                                "reply_to", "raw")}


def _xml_dict(text: bytes) -> dict[str, str]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"Invalid XML payload: {e}") from None
    return {child.tag: (child.text or "") for child in root}


class ChannelWebhook(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.channel = CHANNELS[params["platform"]]
        self.secret = (params.get("secret") or "").encode()
        self.token = params.get("token") or ""
        self.encrypt_key = params.get("encrypt_key") or ""
        self.receive_id = params.get("receive_id") or ""
        self.max_age = params["max_age"]
        self.max_body = params["max_body_bytes"]
        self.ack = params["ack"]
        self.sig_header = params["signature_header"].lower().encode()
        self.ts_header = params["timestamp_header"].lower().encode()
        self.public_key = None
        if params.get("public_key"):
            self.public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(params["public_key"]))
        self.wecom_key = b""
        if params.get("encoding_aes_key"):
            self.wecom_key = base64.b64decode(params["encoding_aes_key"] + "=")
        self.session = LazyClient(lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)),
                                  aiohttp.ClientSession.close)
        self.tasks: set[asyncio.Task] = set()

    def on_request(self, ex: Exchange) -> Any:
        return self.handle(ex)

    # ------------------------------------------------------------ request phase
    async def handle(self, ex: Exchange) -> Reply | None:
        query = parse_qs(ex.target.partition(b"?")[2].decode("latin-1"))
        q = {k: v[0] for k, v in query.items()}
        if self.channel == "wecom" and ex.method == b"GET":
            return self._wecom_echo(q)
        if ex.method != b"POST":
            return error_reply(405, "Method not allowed", [(b"Allow", b"POST")])
        body = await read_body(ex, self.max_body)
        if body.__class__ is Reply:
            return body  # type: ignore[return-value]
        try:
            root, answer = getattr(self, "_" + self.channel)(ex, body, q)  # type: ignore[arg-type]
        except Rejected as e:
            return error_reply(401, "Invalid webhook signature", reason=str(e))
        except (ValueError, KeyError, TypeError) as e:
            return error_reply(400, str(e) or "Invalid webhook payload")
        if answer is not None:
            return answer
        message = normalize(self.channel, root)
        data = orjson.dumps(message)
        ex.headers = [h for h in ex.headers if h[0].lower() != b"x-a3s-channel"]
        ex.headers.append((b"X-A3S-Channel", self.channel.encode()))
        if self.ack == "immediate":
            self._post_later(ex, data)
            return Reply(200, *self._ack_body())
        forward_body(ex, data, JSON)
        return None

    def _fresh(self, ts: str, scale: float = 1.0) -> None:
        try:
            t = float(ts) / scale
        except ValueError:
            raise Rejected("missing or malformed timestamp") from None
        if abs(time.time() - t) > self.max_age:
            raise Rejected("timestamp outside the replay window")

    @staticmethod
    def _hdr(ex: Exchange, name: bytes) -> str:
        v = header_value(ex.headers, name)
        return v.decode("latin-1") if v is not None else ""

    def _slack(self, ex: Exchange, body: bytes, q: dict[str, str]) -> tuple[dict, Reply | None]:
        ts = self._hdr(ex, b"x-slack-request-timestamp")
        self._fresh(ts)
        want = "v0=" + hmac.new(self.secret, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want.encode(), self._hdr(ex, b"x-slack-signature").encode("latin-1")):
            raise Rejected("signature mismatch")
        ctype = self._hdr(ex, b"content-type")
        if ctype.startswith("application/x-www-form-urlencoded"):    # interactivity: payload=<json>
            form = parse_qs(body.decode())
            root = _json(form["payload"][0].encode()) if "payload" in form else {k: v[0] for k, v in form.items()}
        else:
            root = _json(body)
        if root.get("type") == "url_verification":
            return root, Reply(200, orjson.dumps({"challenge": root.get("challenge", "")}), [(b"Content-Type", JSON)])
        return root, None

    def _discord(self, ex: Exchange, body: bytes, q: dict[str, str]) -> tuple[dict, Reply | None]:
        ts = self._hdr(ex, b"x-signature-timestamp")
        sig = self._hdr(ex, b"x-signature-ed25519")
        if self.public_key is None:
            raise Rejected("no public key configured")
        try:
            self.public_key.verify(bytes.fromhex(sig), ts.encode() + body)
        except (InvalidSignature, ValueError):
            raise Rejected("signature mismatch") from None
        self._fresh(ts)
        root = _json(body)
        if root.get("type") == 1:
            return root, Reply(200, b'{"type":1}', [(b"Content-Type", JSON)])
        return root, None

    def _telegram(self, ex: Exchange, body: bytes, q: dict[str, str]) -> tuple[dict, Reply | None]:
        got = self._hdr(ex, b"x-telegram-bot-api-secret-token").encode("latin-1")
        if not self.secret or not hmac.compare_digest(got, self.secret):
            raise Rejected("secret token mismatch")
        return _json(body), None

    def _feishu(self, ex: Exchange, body: bytes, q: dict[str, str]) -> tuple[dict, Reply | None]:
        root = _json(body)
        signed = self._hdr(ex, b"x-lark-signature")
        if self.encrypt_key:
            ts = self._hdr(ex, b"x-lark-request-timestamp")
            nonce = self._hdr(ex, b"x-lark-request-nonce")
            if signed or "encrypt" not in root:
                want = hashlib.sha256((ts + nonce + self.encrypt_key).encode() + body).hexdigest()
                if not hmac.compare_digest(want.encode(), signed.encode("latin-1")):
                    raise Rejected("signature mismatch")
                self._fresh(ts)
            if "encrypt" in root:
                data = base64.b64decode(root["encrypt"])
                plain = _aes_cbc_decrypt(hashlib.sha256(self.encrypt_key.encode()).digest(), data[:16], data[16:])
                plain = plain[: -plain[-1]] if plain and 1 <= plain[-1] <= 16 else plain
                root = _json(plain)
                if not signed and root.get("type") != "url_verification":
                    raise Rejected("missing signature")   # unsigned encrypted payloads: only the handshake
        token = root.get("token") if "token" in root else _get(root, "header", "token")
        if self.token and not hmac.compare_digest(_s(token).encode(), self.token.encode()):
            raise Rejected("verification token mismatch")
        if not self.token and not self.encrypt_key:
            raise Rejected("no verification token or encrypt key configured")
        if "challenge" in root:
            return root, Reply(200, orjson.dumps({"challenge": root["challenge"]}), [(b"Content-Type", JSON)])
        return root, None

    def _dingtalk(self, ex: Exchange, body: bytes, q: dict[str, str]) -> tuple[dict, Reply | None]:
        ts = self._hdr(ex, b"timestamp")
        self._fresh(ts, 1000.0)
        want = base64.b64encode(hmac.new(self.secret, ts.encode() + b"\n" + self.secret, hashlib.sha256).digest())
        if not self.secret or not hmac.compare_digest(want, self._hdr(ex, b"sign").encode("latin-1")):
            raise Rejected("signature mismatch")
        return _json(body), None

    def _wecom_check(self, q: dict[str, str], encrypted: str) -> bytes:
        ts, nonce = q.get("timestamp", ""), q.get("nonce", "")
        want = hashlib.sha1("".join(sorted([self.token, ts, nonce, encrypted])).encode()).hexdigest()
        if not self.token or not hmac.compare_digest(want.encode(), q.get("msg_signature", "").encode()):
            raise Rejected("signature mismatch")
        self._fresh(ts)
        data = _aes_cbc_decrypt(self.wecom_key, self.wecom_key[:16], base64.b64decode(encrypted))
        pad = data[-1]
        data = data[: -pad] if 1 <= pad <= 32 else data
        n = struct.unpack(">I", data[16:20])[0]
        msg, receive_id = data[20:20 + n], data[20 + n:].decode()
        if self.receive_id and not hmac.compare_digest(receive_id.encode(), self.receive_id.encode()):
            raise Rejected("receive id mismatch")
        return msg

    def _wecom_echo(self, q: dict[str, str]) -> Reply:
        try:
            msg = self._wecom_check(q, q.get("echostr", ""))
        except Rejected as e:
            return error_reply(401, "Invalid webhook signature", reason=str(e))
        except (ValueError, struct.error):
            return error_reply(400, "Invalid echostr")
        return Reply(200, msg, [(b"Content-Type", b"text/plain")])

    def _wecom(self, ex: Exchange, body: bytes, q: dict[str, str]) -> tuple[dict, Reply | None]:
        outer = _xml_dict(body)
        if "Encrypt" not in outer:
            raise Rejected("no Encrypt element")
        try:
            return _xml_dict(self._wecom_check(q, outer["Encrypt"])), None
        except struct.error:
            raise ValueError("Invalid encrypted payload") from None

    def _webchat(self, ex: Exchange, body: bytes, q: dict[str, str]) -> tuple[dict, Reply | None]:
        if self.secret:
            ts = self._hdr(ex, self.ts_header)
            self._fresh(ts)
            want = "sha256=" + hmac.new(self.secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want.encode(), self._hdr(ex, self.sig_header).encode("latin-1")):
                raise Rejected("signature mismatch")
        return _json(body), None

    # ------------------------------------------------------------ ack = "immediate"
    def _ack_body(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if self.channel == "discord":
            return b'{"type":5}', [(b"Content-Type", JSON)]          # deferred channel message
        if self.channel in ("telegram", "wecom", "slack"):
            return b"", [(b"Content-Type", b"text/plain")]
        return b"{}", [(b"Content-Type", JSON)]

    def _post_later(self, ex: Exchange, data: bytes) -> None:
        backend = ex.service.balancer.pick() if ex.service is not None else None
        if backend is None:
            log.warning("channel-webhook %s: no healthy backend for an acknowledged message", self.name)
            return
        url = backend.url.replace("h2c://", "http://", 1) + ex.target.decode("latin-1")
        headers = {"Content-Type": "application/json", "X-A3S-Channel": self.channel}
        task = asyncio.get_running_loop().create_task(self._post(url, data, headers))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, url: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            async with self.session.get().post(url, data=data, headers=headers) as resp:
                await resp.read()
                if resp.status >= 400:
                    log.warning("channel-webhook %s: backend answered %d", self.name, resp.status)
        except (TimeoutError, aiohttp.ClientError) as e:
            log.warning("channel-webhook %s: delivering to %s failed: %s", self.name, url, e)

    def close(self) -> None:
        self.session.close()
