"""WebSocket multiplexing (``websocket-mux``, ``a3s-mux.v1``) through the real binary, two workers, with the
package's client (``a3s_gateway.shared.wsmux_client``, on ``websockets``) and ``websockets`` backends: 20 channels
over one connection keep flowing while one channel's backend is stalled and another channel is not read, the
channel limit is enforced, each channel is routed and authorized on its own, credit is enforced, open channels
survive a reload and later channels route with the new config, HTTP channels stream a response body, a backend
that never answers the upgrade times out, and limits that leave no room are refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from a3s_gateway.shared import wsmux
from a3s_gateway.shared.wsmux_client import Channel, ChannelClosed, ChannelError, MuxClient
from harness import BINARY, Gateway
from proto_backends import StalledWebSocket, StreamServer, WebSocketEcho
from websockets.asyncio.client import connect
from websockets.sync.client import connect as connect_sync

WINDOW = 65536
CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"

[routers.mux]
rule = "Path(`/mux`)"
service = "echo"
middlewares = ["mux"]
[routers.echo]
rule = "PathPrefix(`/echo`) || Path(`/headers`)"
service = "echo"
[routers.stall]
rule = "PathPrefix(`/stall`)"
service = "stall"
[routers.silent]
rule = "PathPrefix(`/silent`)"
service = "silent"
[routers.events]
rule = "PathPrefix(`/ndjson`)"
service = "events"
[routers.secret]
rule = "PathPrefix(`/secret`)"
service = "echo"
middlewares = ["auth"]

[middlewares.mux]
type = "websocket-mux"
max_channels = 20
window = 65536
max_message_bytes = 65536
max_channel_buffer = 262144
max_buffered_bytes = 8388608
[middlewares.auth]
type = "basic-auth"
username = "u"
password = "p"

[services.echo.load_balancer]
servers = [{url = "{echo}"}]
[services.stall.load_balancer]
servers = [{url = "{stall}"}]
[services.silent.load_balancer]
servers = [{url = "{stall}"}]
[services.silent.load_balancer.timeouts]
response_header = "500ms"
[services.events.load_balancer]
servers = [{url = "{events}"}]
"""


@pytest.fixture(scope="module")
def echo() -> Iterator[WebSocketEcho]:
    server = WebSocketEcho()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stall() -> Iterator[StalledWebSocket]:
    server = StalledWebSocket()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def events() -> Iterator[StreamServer]:
    server = StreamServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def config(echo: WebSocketEcho, stall: StalledWebSocket, events: StreamServer) -> str:
    return CONFIG.replace("{echo}", echo.url).replace("{stall}", stall.url).replace("{events}", events.url)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, config: str) -> Iterator[Gateway]:
    g = Gateway(config, tmp_path_factory.mktemp("gw"))
    yield g
    g.stop()


def mux_url(gw: Gateway) -> str:
    return f"ws://127.0.0.1:{gw.port}/mux"


async def _until(condition: object, what: str, timeout: float = 10.0) -> None:
    """Poll ``condition()`` on the event loop until it holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _echo_rounds(channel: Channel, rounds: int) -> int:
    for i in range(rounds):
        message: str | bytes = f"{channel.id}:{i}" if i % 2 else bytes([channel.id % 256]) * (i + 1) * 100
        await channel.send(message)
        assert await asyncio.wait_for(channel.recv(), 10) == message
    return rounds


def test_twenty_channels_keep_flowing_while_one_backend_is_stalled(gw: Gateway, stall: StalledWebSocket) -> None:
    async def main() -> None:
        async with MuxClient.connect(mux_url(gw)) as mux:
            assert mux.window == WINDOW and mux.max_channels == 20
            stalled = await mux.open("/stall")
            unread = await mux.open("/echo/unread")
            echoes = [await mux.open(f"/echo/{i}") for i in range(18)]
            sent = 0
            chunk = b"s" * 16384

            async def flood() -> None:
                nonlocal sent
                while sent < 64 << 20:
                    await stalled.send(chunk)
                    sent += len(chunk)

            flooding = asyncio.get_running_loop().create_task(flood())
            for _ in range(8):                 # the unread channel's backend answers; nobody reads it
                await unread.send(b"u" * 32768)
            await _until(lambda: stalled.credit <= 0, "the stalled channel's credit to run out")
            await _until(lambda: sum(len(m) for m in unread.messages) >= WINDOW, "the unread channel's window")
            done = await asyncio.gather(*(_echo_rounds(c, 30) for c in echoes))
            assert done == [30] * 18
            assert not flooding.done() and sent < 64 << 20          # still waiting for credit that never comes
            assert stalled.end is None and unread.end is None       # both channels are still open
            held = sum(len(m) for m in unread.messages)
            assert 0 < held < WINDOW + 32768                        # the gateway kept to the unread one's credit
            flooding.cancel()

    asyncio.run(main())
    assert stall.open >= 1


def test_channel_limit_refuses_the_twenty_first_and_frees_ids_on_close(gw: Gateway) -> None:
    async def main() -> None:
        async with MuxClient.connect(mux_url(gw)) as mux:
            channels = [await mux.open(f"/echo/{i}") for i in range(20)]
            with pytest.raises(ChannelError) as info:
                await mux.open("/echo/21")
            assert info.value.status == 429 and "max_channels = 20" in info.value.message
            await channels[0].close()
            again = await mux.open("/echo/again")
            assert await _echo_rounds(again, 4) == 4
            assert await _echo_rounds(channels[19], 2) == 2

    asyncio.run(main())


def test_each_channel_is_routed_and_authorized_on_its_own(gw: Gateway) -> None:
    async def main() -> None:
        async with MuxClient.connect(mux_url(gw)) as mux:
            with pytest.raises(ChannelError) as info:
                await mux.open("/secret/x")
            assert info.value.status == 401
            with pytest.raises(ChannelError) as info:
                await mux.open("/nowhere")
            assert info.value.status == 404
            secret = await mux.open("/secret/x", headers={"Authorization": "Basic dTpw"})
            assert await _echo_rounds(secret, 2) == 2
            headers = await mux.open("/headers", headers={"X-Tenant": "blue"})
            seen = json.loads(await asyncio.wait_for(headers.recv(), 10))
            assert seen["x-tenant"] == "blue" and seen["x-forwarded-for"] == "127.0.0.1"
            assert seen["upgrade"] == "websocket" and "a3s-mux" not in json.dumps(seen)

    asyncio.run(main())


def test_plain_websocket_on_a_mux_router_is_proxied_unchanged(gw: Gateway) -> None:
    with connect_sync(mux_url(gw)) as ws:
        ws.send("plain")
        assert ws.recv(timeout=5) == "plain"


def test_data_without_credit_ends_only_that_channel(gw: Gateway) -> None:
    async def main() -> None:
        async with connect(mux_url(gw), subprotocols=[wsmux.SUBPROTOCOL], max_size=None) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == wsmux.SUBPROTOCOL
            assert wsmux.parse_control(await ws.recv())["op"] == "hello"
            await ws.send(wsmux.control("open", 1, path="/stall/silent"))    # not opened yet: no credit comes back
            await ws.send(wsmux.control("open", 2, path="/echo/2"))
            for _ in range(3):                 # far past the window, without waiting for credit
                await ws.send(wsmux.binary(1, b"x" * (WINDOW - 100)))
            await ws.send(wsmux.text(2, "still here"))
            seen: list[object] = []
            while "still here" not in seen:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, str) and wsmux.is_control(message):
                    seen.append(wsmux.parse_control(message))
                elif isinstance(message, str):
                    seen.append(wsmux.split_text(message)[1])
            errors = [m for m in seen if isinstance(m, dict) and m["op"] == "error"]
            assert errors == [{"op": "error", "ch": 1, "status": 400, "message": "data without credit (flow control)"}]

    asyncio.run(main())


def test_open_channels_survive_a_reload_and_new_channels_use_the_new_routes(gw: Gateway, config: str) -> None:
    base = config

    async def main() -> None:
        async with MuxClient.connect(mux_url(gw)) as mux:
            before = await mux.open("/echo/before")
            generation = gw.health()["generation"]
            changed = base.replace("PathPrefix(`/echo`) || Path(`/headers`)", "PathPrefix(`/moved`)")
            assert await asyncio.to_thread(gw.reload, changed) == generation + 1
            assert await _echo_rounds(before, 2) == 2
            with pytest.raises(ChannelError) as info:
                await mux.open("/echo/after")
            assert info.value.status == 404
            moved = await mux.open("/moved/here")
            assert await _echo_rounds(moved, 2) == 2

    try:
        asyncio.run(main())
    finally:
        gw.reload(base)


def test_buffer_limits_that_leave_no_room_for_a_window_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[middlewares.mux]\ntype = "websocket-mux"\nwindow = 65536\nmax_message_bytes = 65536\n'
                      'max_channel_buffer = 100000\nmax_buffered_bytes = 50000\n')
    r = subprocess.run([*BINARY, "validate", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "middlewares.mux.max_channel_buffer" in r.stderr and "2 * window + max_message_bytes (196608)" in r.stderr
    assert "middlewares.mux.max_buffered_bytes" in r.stderr


def test_http_channel_streams_a_response_body_beside_websocket_channels(gw: Gateway) -> None:
    async def main() -> None:
        async with MuxClient.connect(mux_url(gw)) as mux:
            socket = await mux.open("/echo/beside")
            stream = await mux.open("/ndjson/5/0.01", kind="http")
            assert stream.status == 200 and stream.headers["content-type"] == "application/x-ndjson"
            body = b""
            with pytest.raises(ChannelClosed) as info:
                while True:
                    body += await asyncio.wait_for(stream.recv(), 10)  # type: ignore[operator]
                    assert await _echo_rounds(socket, 1) == 1
            assert info.value.code == 1000
            assert [json.loads(line)["i"] for line in body.splitlines()] == [0, 1, 2, 3, 4]
            with pytest.raises(ChannelError) as refused:
                await mux.open("/ndjson/1/0", kind="ftp")
            assert refused.value.status == 400

    asyncio.run(main())


def test_a_backend_that_never_answers_the_upgrade_times_the_channel_out(gw: Gateway) -> None:
    async def main() -> None:
        async with MuxClient.connect(mux_url(gw)) as mux:
            with pytest.raises(ChannelError) as info:
                await asyncio.wait_for(mux.open("/silent/x"), 10)
            assert info.value.status == 504
            other = await mux.open("/echo/after-timeout")
            assert await _echo_rounds(other, 2) == 2

    asyncio.run(main())


@pytest.mark.parametrize("garbage", [b"\x00\x01", "no channel prefix", "{not json", '{"op": 7}', '["open"]',
                                     '{"op":"open","ch":-1}', "0:zero is not a channel"])
def test_invalid_framing_closes_the_connection_with_1008_and_the_worker_goes_on(gw: Gateway,
                                                                                garbage: str | bytes) -> None:
    async def main() -> None:
        async with connect(mux_url(gw), subprotocols=[wsmux.SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.recv()                    # hello
            await ws.send(garbage)
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008
        async with MuxClient.connect(mux_url(gw)) as mux:
            assert await _echo_rounds(await mux.open("/echo/next"), 1) == 1

    asyncio.run(main())
