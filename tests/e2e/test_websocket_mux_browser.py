"""The JavaScript example client (docs/protocols/wsmux-client.js) in a real browser — Debian's headless
Chromium driven by playwright — against the real binary: text and binary channels echo, a refused channel
rejects ``open``, an HTTP channel streams its body and ends."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Gateway
from proto_backends import StreamServer, WebSocketEcho
from test_websocket_mux import CONFIG

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/install-deps)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
CLIENT = Path(__file__).resolve().parents[2] / "docs" / "protocols" / "wsmux-client.js"

SCRIPT = """async (url) => {
  const mux = await MuxClient.connect(url);
  const text = await mux.open("/echo/js");
  const echoed = new Promise((resolve) => { text.onmessage = resolve; });
  await text.send("hello from js");
  const bin = await mux.open("/echo/bin");
  const bytes = new Promise((resolve) => { bin.onmessage = resolve; });
  await bin.send(new Uint8Array([1, 2, 3]));
  let refused = null;
  try { await mux.open("/nowhere"); } catch (e) { refused = e.message; }
  const stream = await mux.open("/ndjson/3/0", { kind: "http" });
  let body = "";
  stream.onmessage = (data) => { body += new TextDecoder().decode(data); };
  const closed = new Promise((resolve) => { stream.onclose = resolve; });
  const end = await closed;
  return { echoed: await echoed, bytes: Array.from(new Uint8Array(await bytes)), refused,
           status: stream.status, lines: body.trim().split("\\n").length, code: end.code };
}"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    echo, events = WebSocketEcho(), StreamServer()
    config = CONFIG.replace("{echo}", echo.url).replace("{stall}", echo.url).replace("{events}", events.url)
    g = Gateway(config, tmp_path_factory.mktemp("gw"))
    yield g
    g.stop()
    echo.stop()
    events.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_the_javascript_example_client_multiplexes_in_a_browser(gw: Gateway, browser: Any) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_script_tag(content=CLIENT.read_text())
    got = page.evaluate(SCRIPT, f"ws://127.0.0.1:{gw.port}/mux")
    assert got == {"echoed": "hello from js", "bytes": [1, 2, 3], "refused": "channel 3: 404 No route matched",
                   "status": 200, "lines": 3, "code": 1000}
    assert errors == []
