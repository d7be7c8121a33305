"""channel-webhook through the real binary: each platform's real signed payload is verified, normalized and
forwarded; a bad or stale signature gets 401 and never reaches the backend; handshakes are answered by the
gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
import time
from collections.abc import Iterator

import httpx
import pytest
from ai_support import AiBackend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from harness import Gateway

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TG_SECRET = "tg-secret-token_123"
DING_SECRET = "SECdingtalk-app-secret"
WEB_SECRET = "webchat-hmac-key"
FEISHU_TOKEN = "feishu-verify-token"
FEISHU_KEY = "feishu-encrypt-key"
WECOM_TOKEN = "wecomtoken"
WECOM_AES = base64.b64encode(os.urandom(32)).decode().rstrip("=")
CORP = "wwcorp123"
DISCORD_KEY = Ed25519PrivateKey.generate()
DISCORD_PUB = DISCORD_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

CONFIG = f"""
[entrypoints.web]
address = "127.0.0.1:{{web}}"
[admin]
address = "127.0.0.1:{{admin}}"
[services.bot.load_balancer]
servers = [{{url = "%(bot)s"}}]
[routers.slack]
rule = "Path(`/webhook/slack`)"
service = "bot"
middlewares = ["slack"]
[routers.discord]
rule = "Path(`/webhook/discord`)"
service = "bot"
middlewares = ["discord"]
[routers.telegram]
rule = "Path(`/webhook/telegram`)"
service = "bot"
middlewares = ["telegram"]
[routers.feishu]
rule = "Path(`/webhook/feishu`)"
service = "bot"
middlewares = ["feishu"]
[routers.feishu-plain]
rule = "Path(`/webhook/lark`)"
service = "bot"
middlewares = ["feishu-plain"]
[routers.dingtalk]
rule = "Path(`/webhook/dingtalk`)"
service = "bot"
middlewares = ["dingtalk"]
[routers.wecom]
rule = "Path(`/webhook/wecom`)"
service = "bot"
middlewares = ["wecom"]
[routers.webchat]
rule = "Path(`/webhook/webchat`)"
service = "bot"
middlewares = ["webchat"]
[routers.slack-fast]
rule = "Path(`/webhook/slack-fast`)"
service = "bot"
middlewares = ["slack-fast"]

[middlewares.slack]
type = "channel-webhook"
platform = "slack"
secret = "{SLACK_SECRET}"
max_body_bytes = 200000
[middlewares.slack-fast]
type = "channel-webhook"
platform = "slack"
secret = "{SLACK_SECRET}"
ack = "immediate"
[middlewares.discord]
type = "channel-webhook"
platform = "discord"
public_key = "{DISCORD_PUB}"
[middlewares.telegram]
type = "channel-webhook"
platform = "telegram"
secret = "{TG_SECRET}"
[middlewares.feishu]
type = "channel-webhook"
platform = "feishu"
token = "{FEISHU_TOKEN}"
encrypt_key = "{FEISHU_KEY}"
[middlewares.feishu-plain]
type = "channel-webhook"
platform = "lark"
token = "{FEISHU_TOKEN}"
[middlewares.dingtalk]
type = "channel-webhook"
platform = "dingtalk"
secret = "{DING_SECRET}"
[middlewares.wecom]
type = "channel-webhook"
platform = "wecom"
token = "{WECOM_TOKEN}"
encoding_aes_key = "{WECOM_AES}"
receive_id = "{CORP}"
[middlewares.webchat]
type = "channel-webhook"
platform = "webchat"
secret = "{WEB_SECRET}"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, AiBackend, httpx.Client]]:
    bot = AiBackend("bot")
    gw = Gateway(CONFIG % {"bot": bot.url}, tmp_path_factory.mktemp("wh"), workers=2)
    client = httpx.Client(base_url=gw.url, timeout=10)
    yield gw, bot, client
    client.close()
    gw.stop()
    bot.stop()


def forwarded(r: httpx.Response, channel: str) -> dict:
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["x-a3s-channel"] == channel
    msg = json.loads(seen["body"])
    assert msg["channel"] == channel
    assert set(msg) == {"id", "channel", "chat_id", "sender_id", "sender_name", "content", "timestamp",
                        "reply_to", "raw"}
    return msg


def rejected(r: httpx.Response, bot: AiBackend, before: int) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "Invalid webhook signature"
    assert bot.seen() == before


def slack_headers(body: bytes, ts: int | None = None, secret: str = SLACK_SECRET) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig, "Content-Type": "application/json"}


def test_slack_signed_event_is_normalized_and_forwarded(env) -> None:
    gw, bot, c = env
    body = json.dumps({"type": "event_callback", "event": {
        "type": "message", "client_msg_id": "m-1", "channel": "C1", "user": "U1", "text": "hi bot",
        "ts": "1700000000.000100", "thread_ts": "1699999999.1"}}).encode()
    msg = forwarded(c.post("/webhook/slack", content=body, headers=slack_headers(body)), "slack")
    assert (msg["id"], msg["chat_id"], msg["sender_id"], msg["content"], msg["timestamp"], msg["reply_to"]) == (
        "m-1", "C1", "U1", "hi bot", 1700000000000, "1699999999.1")
    assert msg["sender_name"] is None and msg["raw"]["event"]["text"] == "hi bot"


def test_slack_bad_or_stale_signature_is_401_and_not_forwarded(env) -> None:
    gw, bot, c = env
    body = b'{"event": {"text": "x"}}'
    before = bot.seen()
    rejected(c.post("/webhook/slack", content=body, headers=slack_headers(body, secret="wrong")), bot, before)
    rejected(c.post("/webhook/slack", content=body, headers=slack_headers(body, ts=int(time.time()) - 600)), bot,
             before)
    tampered = slack_headers(body)
    rejected(c.post("/webhook/slack", content=body + b" ", headers=tampered), bot, before)


def test_slack_url_verification_is_answered_by_the_gateway(env) -> None:
    gw, bot, c = env
    body = (b'{"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", '
            b'"type": "url_verification"}')
    before = bot.seen()
    r = c.post("/webhook/slack", content=body, headers=slack_headers(body))
    assert r.status_code == 200 and r.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert bot.seen() == before


def test_slack_oversized_body_is_413(env) -> None:
    gw, bot, c = env
    body = b'{"event": {"text": "' + b"a" * 300000 + b'"}}'
    before = bot.seen()
    r = c.post("/webhook/slack", content=body, headers=slack_headers(body))
    assert r.status_code == 413
    assert bot.seen() == before


def test_slack_immediate_ack_then_delivers_in_background(env) -> None:
    gw, bot, c = env
    body = b'{"event": {"client_msg_id": "fast", "text": "quick", "ts": "1700000000.1"}}'
    before = bot.seen()
    r = c.post("/webhook/slack-fast", content=body, headers=slack_headers(body))
    assert r.status_code == 200 and r.content == b""
    deadline = time.monotonic() + 10
    while bot.seen() == before:
        assert time.monotonic() < deadline, "message never delivered"
        time.sleep(0.02)


def discord_headers(body: bytes, ts: int | None = None, key: Ed25519PrivateKey = DISCORD_KEY) -> dict[str, str]:
    ts_s = str(int(time.time()) if ts is None else ts)
    return {"X-Signature-Timestamp": ts_s, "X-Signature-Ed25519": key.sign(ts_s.encode() + body).hex(),
            "Content-Type": "application/json"}


def test_discord_ping_is_answered_and_messages_forwarded(env) -> None:
    gw, bot, c = env
    before = bot.seen()
    ping = b'{"type": 1, "id": "1", "application_id": "2"}'
    r = c.post("/webhook/discord", content=ping, headers=discord_headers(ping))
    assert r.status_code == 200 and r.json() == {"type": 1}
    assert bot.seen() == before
    body = json.dumps({"id": "99", "channel_id": "C9", "content": "yo", "author": {"id": "A1", "username": "ann"},
                       "message_reference": {"message_id": "98"}}).encode()
    msg = forwarded(c.post("/webhook/discord", content=body, headers=discord_headers(body)), "discord")
    assert (msg["id"], msg["chat_id"], msg["sender_id"], msg["sender_name"], msg["content"], msg["reply_to"]) == (
        "99", "C9", "A1", "ann", "yo", "98")


def test_discord_wrong_key_or_stale_is_401(env) -> None:
    gw, bot, c = env
    before = bot.seen()
    body = b'{"type": 2, "id": "5"}'
    rejected(c.post("/webhook/discord", content=body, headers=discord_headers(body, key=Ed25519PrivateKey.generate())),
             bot, before)
    rejected(c.post("/webhook/discord", content=body, headers=discord_headers(body, ts=int(time.time()) - 3600)),
             bot, before)


def test_telegram_secret_token(env) -> None:
    gw, bot, c = env
    body = json.dumps({"update_id": 1, "message": {"message_id": 7, "date": 1700000000, "text": "hello",
                                                   "chat": {"id": -100123}, "from": {"id": 42, "first_name": "Bo"},
                                                   "reply_to_message": {"message_id": 6}}}).encode()
    msg = forwarded(c.post("/webhook/telegram", content=body,
                           headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}), "telegram")
    assert (msg["id"], msg["chat_id"], msg["sender_id"], msg["sender_name"], msg["content"], msg["timestamp"],
            msg["reply_to"]) == ("7", "-100123", "42", "Bo", "hello", 1700000000000, "6")
    before = bot.seen()
    rejected(c.post("/webhook/telegram", content=body, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}), bot,
             before)
    rejected(c.post("/webhook/telegram", content=body), bot, before)


def feishu_encrypt(doc: dict) -> bytes:
    key = hashlib.sha256(FEISHU_KEY.encode()).digest()
    iv = os.urandom(16)
    data = json.dumps(doc).encode()
    pad = 16 - len(data) % 16
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = enc.update(data + bytes([pad]) * pad) + enc.finalize()
    return json.dumps({"encrypt": base64.b64encode(iv + ct).decode()}).encode()


def feishu_headers(body: bytes, ts: int | None = None, key: str = FEISHU_KEY) -> dict[str, str]:
    ts_s = str(int(time.time()) if ts is None else ts)
    nonce = "n0nce"
    sig = hashlib.sha256((ts_s + nonce + key).encode() + body).hexdigest()
    return {"X-Lark-Request-Timestamp": ts_s, "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": sig,
            "Content-Type": "application/json"}


FEISHU_EVENT = {"schema": "2.0", "header": {"event_type": "im.message.receive_v1", "token": FEISHU_TOKEN},
                "event": {"sender": {"sender_id": {"open_id": "ou_1"}},
                          "message": {"message_id": "om_1", "chat_id": "oc_1", "create_time": "1700000000123",
                                      "parent_id": "om_0", "content": json.dumps({"text": "你好"})}}}


def test_feishu_encrypted_signed_event_is_decrypted_and_forwarded(env) -> None:
    gw, bot, c = env
    body = feishu_encrypt(FEISHU_EVENT)
    msg = forwarded(c.post("/webhook/feishu", content=body, headers=feishu_headers(body)), "feishu")
    assert (msg["id"], msg["chat_id"], msg["sender_id"], msg["content"], msg["timestamp"], msg["reply_to"]) == (
        "om_1", "oc_1", "ou_1", "你好", 1700000000123, "om_0")
    before = bot.seen()
    rejected(c.post("/webhook/feishu", content=body, headers=feishu_headers(body, key="other")), bot, before)
    rejected(c.post("/webhook/feishu", content=body, headers=feishu_headers(body, ts=int(time.time()) - 900)), bot,
             before)
    rejected(c.post("/webhook/feishu", content=body), bot, before)     # unsigned non-handshake


def test_feishu_challenge_encrypted_and_plain(env) -> None:
    gw, bot, c = env
    before = bot.seen()
    body = feishu_encrypt({"challenge": "ch-1", "token": FEISHU_TOKEN, "type": "url_verification"})
    r = c.post("/webhook/feishu", content=body)
    assert r.status_code == 200 and r.json() == {"challenge": "ch-1"}
    r = c.post("/webhook/lark", json={"challenge": "ch-2", "token": FEISHU_TOKEN, "type": "url_verification"})
    assert r.status_code == 200 and r.json() == {"challenge": "ch-2"}
    rejected(c.post("/webhook/lark", json={"challenge": "ch-3", "token": "bad", "type": "url_verification"}), bot,
             before)
    assert bot.seen() == before


def dingtalk_headers(ts: int | None = None, secret: str = DING_SECRET) -> dict[str, str]:
    ts_s = str(int(time.time() * 1000) if ts is None else ts)
    sign = base64.b64encode(hmac.new(secret.encode(), f"{ts_s}\n{secret}".encode(), hashlib.sha256).digest()).decode()
    return {"timestamp": ts_s, "sign": sign}


def test_dingtalk_signed_message(env) -> None:
    gw, bot, c = env
    doc = {"msgId": "d1", "conversationId": "cid1", "senderStaffId": "s1", "senderNick": "Li",
           "createAt": 1700000000456, "text": {"content": "ding"}, "msgtype": "text"}
    msg = forwarded(c.post("/webhook/dingtalk", json=doc, headers=dingtalk_headers()), "dingtalk")
    assert (msg["id"], msg["chat_id"], msg["sender_id"], msg["sender_name"], msg["content"], msg["timestamp"]) == (
        "d1", "cid1", "s1", "Li", "ding", 1700000000456)
    before = bot.seen()
    rejected(c.post("/webhook/dingtalk", json=doc, headers=dingtalk_headers(secret="nope")), bot, before)
    rejected(c.post("/webhook/dingtalk", json=doc, headers=dingtalk_headers(ts=int(time.time() * 1000) - 3_600_000)),
             bot, before)


def wecom_encrypt(msg: bytes, receive_id: str = CORP) -> str:
    key = base64.b64decode(WECOM_AES + "=")
    plain = os.urandom(16) + struct.pack(">I", len(msg)) + msg + receive_id.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def wecom_query(encrypted: str, ts: int | None = None, token: str = WECOM_TOKEN) -> dict[str, str]:
    ts_s = str(int(time.time()) if ts is None else ts)
    nonce = "12345"
    sig = hashlib.sha1("".join(sorted([token, ts_s, nonce, encrypted])).encode()).hexdigest()
    return {"msg_signature": sig, "timestamp": ts_s, "nonce": nonce}


def test_wecom_echostr_verification(env) -> None:
    gw, bot, c = env
    before = bot.seen()
    echostr = wecom_encrypt(b"echo-4711")
    r = c.get("/webhook/wecom", params={**wecom_query(echostr), "echostr": echostr})
    assert r.status_code == 200 and r.text == "echo-4711"
    r = c.get("/webhook/wecom", params={**wecom_query(echostr, token="bad"), "echostr": echostr})
    assert r.status_code == 401
    assert bot.seen() == before


def test_wecom_encrypted_xml_message(env) -> None:
    gw, bot, c = env
    inner = (b"<xml><ToUserName><![CDATA[wwcorp123]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
             b"<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             b"<Content><![CDATA[wecom hi]]></Content><MsgId>1234567890</MsgId><AgentID>1</AgentID></xml>")
    enc = wecom_encrypt(inner)
    body = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt>"
            "<AgentID><![CDATA[1]]></AgentID></xml>").encode()
    msg = forwarded(c.post("/webhook/wecom", params=wecom_query(enc), content=body,
                           headers={"Content-Type": "text/xml"}), "wecom")
    assert (msg["id"], msg["chat_id"], msg["sender_id"], msg["content"], msg["timestamp"]) == (
        "1234567890", "zhangsan", "zhangsan", "wecom hi", 1700000000000)
    before = bot.seen()
    rejected(c.post("/webhook/wecom", params=wecom_query(enc, token="bad"), content=body), bot, before)
    rejected(c.post("/webhook/wecom", params=wecom_query(enc, ts=int(time.time()) - 1000), content=body), bot, before)
    other = wecom_encrypt(inner, receive_id="someone-else")
    body2 = f"<xml><Encrypt><![CDATA[{other}]]></Encrypt></xml>".encode()
    rejected(c.post("/webhook/wecom", params=wecom_query(other), content=body2), bot, before)


def test_webchat_hmac(env) -> None:
    gw, bot, c = env
    body = json.dumps({"id": "w1", "session_id": "s9", "user_id": "u9", "user_name": "Vi", "content": "web hi",
                       "timestamp": 1700000000999}).encode()
    ts = str(int(time.time()))
    sig = "sha256=" + hmac.new(WEB_SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    msg = forwarded(c.post("/webhook/webchat", content=body,
                           headers={"X-Webchat-Timestamp": ts, "X-Webchat-Signature": sig}), "webchat")
    assert (msg["id"], msg["chat_id"], msg["sender_id"], msg["sender_name"], msg["content"], msg["timestamp"]) == (
        "w1", "s9", "u9", "Vi", "web hi", 1700000000999)
    before = bot.seen()
    rejected(c.post("/webhook/webchat", content=body, headers={"X-Webchat-Timestamp": ts, "X-Webchat-Signature": "x"}),
             bot, before)
