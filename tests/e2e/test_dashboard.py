"""The web dashboard in a real browser: Debian's headless Chromium driven by playwright (never
``playwright install``), against the real binary with 50 routers, real backends and live traffic.

Login and its refusal, every page with the config's objects, live req/s and latency, a killed backend going
DOWN and back UP, a ``<script>`` name shown escaped, the CSP header with no violation, reload with CSRF.
Screenshots of every page go to a temp directory (printed; not committed)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from certs import CA
from harness import Backend, Gateway, free_port, wait_until

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/install-deps)")

TOKEN = "dash-TOKEN-never-shown-7"
EVIL = "<script>window.pwned=1</script>"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.secure]
address = "127.0.0.1:{secure}"
[entrypoints.secure.tls]
cert_file = "%(cert)s"
key_file = "%(key)s"
[admin]
address = "127.0.0.1:{admin}"
token = "%(token)s"

[services.app.load_balancer]
servers = [{url = "%(app)s"}]
[services.flaky.load_balancer]
servers = [{url = "%(flaky)s"}]
[services.flaky.load_balancer.health_check]
path = "/"
interval = "200ms"
unhealthy_threshold = 1
healthy_threshold = 1
[services.split.weighted]
services = [{name = "app", weight = 3}, {name = "flaky", weight = 1}]

[middlewares.basic]
type = "basic-auth"
username = "alice"
password = "pw-BASIC-secret"

[routers.flaky]
rule = "PathPrefix(`/flaky`)"
service = "flaky"
[routers."%(evil)s"]
rule = "PathPrefix(`/evil`) && Header(`X-Evil`, `%(evil)s`)"
service = "split"
middlewares = ["basic"]
""" + "".join(f"""
[routers.r{i:02d}]
rule = "PathPrefix(`/r{i:02d}`)"
service = "app"
""" for i in range(50))


def api_get(g: Gateway, path: str) -> httpx.Response:
    return httpx.get(g.admin + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Backend, Backend]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    app, flaky = Backend("app"), Backend("flaky")
    pair = CA(tmp / "pki").issue("dash.test")
    g = Gateway(CONFIG % {"token": TOKEN, "app": app.url, "flaky": flaky.url, "evil": EVIL.replace('"', '\\"'),
                          "cert": pair.cert, "key": pair.key},
                tmp, workers=2, wait=False, secure=free_port())
    try:
        try:
            wait_until(lambda: api_get(g, "/api/gateway/health").json()["state"] == "running", 20,
                       what="gateway running")
        except TimeoutError as e:
            raise RuntimeError(g.logs()) from e
        yield g, app, flaky
    finally:
        g.stop()
        app.stop()
        flaky.stop()


@pytest.fixture(scope="module")
def shots() -> Path:
    out = Path(tempfile.mkdtemp(prefix="a3s-dashboard-shots-"))
    print(f"dashboard screenshots in {out}")
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        # playwright gives every launch a fresh temporary profile (it refuses --user-data-dir here)
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


class Watched:
    """A logged-in page with every console message and page error kept, and alerts counted."""

    def __init__(self, browser: Any, g: Gateway) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.g = g
        self.page.goto(g.admin + "/dashboard/login")
        self.page.fill("#token", TOKEN)
        self.page.click("#login")
        self.page.wait_for_url("**/dashboard/")

    def refreshes(self) -> int:
        return int(self.page.get_attribute("#live", "data-refreshes") or 0)

    def wait(self, cond: Any, timeout: float = 15.0) -> None:
        """Poll ``cond`` from here (the page's CSP forbids the eval that wait_for_function needs)."""
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            self.page.wait_for_timeout(100)

    def refreshed(self) -> None:
        self.wait(lambda: self.refreshes() >= 1)


@pytest.fixture(scope="module")
def watched(browser: Any, node: tuple[Gateway, Backend, Backend]) -> Iterator[Watched]:
    w = Watched(browser, node[0])
    yield w
    w.context.close()


def test_login_refuses_a_wrong_token_and_sets_a_strict_httponly_cookie(browser: Any, node: Any) -> None:
    g = node[0]
    context = browser.new_context()
    page = context.new_page()
    page.goto(g.admin + "/")
    assert page.url.endswith("/dashboard/login")          # / → /dashboard/ → the login form
    page.fill("#token", "not-the-token")
    page.click("#login")
    assert page.text_content("#error") == "Wrong token." and not context.cookies()
    assert httpx.get(g.admin + "/dashboard/routers", timeout=10).status_code == 303
    page.fill("#token", TOKEN)
    page.click("#login")
    page.wait_for_url("**/dashboard/")
    assert page.text_content("h1") == "Overview"
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert TOKEN not in cookie["value"]
    context.close()


def test_every_page_renders_the_objects_of_a_50_router_config(watched: Watched, shots: Path) -> None:
    page, g = watched.page, watched.g
    pages = {"overview": "/dashboard/", "routers": "/dashboard/routers", "router": "/dashboard/routers/r07",
             "services": "/dashboard/services", "service": "/dashboard/services/split",
             "middlewares": "/dashboard/middlewares", "middleware": "/dashboard/middlewares/basic",
             "certificates": "/dashboard/certificates", "providers": "/dashboard/providers",
             "workers": "/dashboard/workers"}
    for name, path in pages.items():
        response = page.goto(g.admin + path)
        assert response.status == 200, (path, response.status)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.goto(g.admin + "/dashboard/routers")
    links = page.eval_on_selector_all("main a[href^='/dashboard/routers/']", "els => els.map(e => e.textContent)")
    assert {f"r{i:02d}" for i in range(50)} | {"flaky", EVIL} <= set(links)
    page.goto(g.admin + "/dashboard/routers?q=r4")
    assert page.text_content("main p") == "10 routers"
    page.goto(g.admin + "/dashboard/services/split")
    tree = page.text_content(".tree")
    assert "weight 3" in tree and "weight 1" in tree and "flaky" in tree
    page.goto(g.admin + "/dashboard/middlewares/basic")
    settings = page.text_content("pre")
    assert "pw-BASIC-secret" not in page.content() and '"password": "***"' in settings
    page.goto(g.admin + "/dashboard/certificates")
    cert_row = page.text_content("main tbody tr")
    assert "dash.test" in cert_row and "secure" in cert_row and "0 days" in cert_row     # the CA issues for 1 day
    page.goto(g.admin + "/dashboard/providers")
    assert "file" in page.text_content("main tbody tr")
    page.goto(g.admin + "/dashboard/workers")
    assert page.locator("main tbody tr").count() == 2
    assert page.locator("text=No router named").count() == 0
    assert page.goto(g.admin + "/dashboard/routers/nope").status == 404

    times = []
    for _ in range(10):
        t = time.perf_counter()
        assert api_get(g, "/dashboard/").status_code == 200
        times.append(time.perf_counter() - t)
    print(f"50-router overview render: median {statistics.median(times) * 1000:.1f} ms")


def test_traffic_shows_req_per_s_and_latency_within_two_refreshes(watched: Watched) -> None:
    page, g = watched.page, watched.g
    page.goto(g.admin + "/dashboard/routers/r13")
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                c.get(g.url + "/r13/x")
                time.sleep(0.02)

    t = threading.Thread(target=traffic)
    watched.refreshed()
    start = watched.refreshes()
    t.start()
    try:
        watched.wait(lambda: not page.text_content("main tbody td").startswith("0.00"))
        assert watched.refreshes() - start <= 2
        cells = page.eval_on_selector_all("main tbody td", "els => els.map(e => e.textContent)")
        assert float(cells[0]) > 0 and cells[3].endswith(" ms") and cells[4].endswith(" ms"), cells
        assert page.locator("main svg.spark polyline").count() >= 1
    finally:
        stop.set()
        t.join()


def _health_after_refreshes(watched: Watched, want: str) -> int:
    """Refreshes it took for the flaky server's health cell to read ``want``."""
    page = watched.page
    start = watched.refreshes()
    watched.wait(lambda: page.text_content(".servers tbody td:nth-child(3)") == want)
    return watched.refreshes() - start


def test_a_killed_backend_shows_down_then_up_again(watched: Watched, node: tuple[Gateway, Backend, Backend]) -> None:
    page, g = watched.page, watched.g
    flaky = node[2]
    page.goto(g.admin + "/dashboard/services/flaky")
    assert page.text_content(".servers tbody td:nth-child(3)") == "UP"
    watched.refreshed()
    flaky.stop()
    assert _health_after_refreshes(watched, "DOWN") <= 2
    node_flaky = Backend("flaky", port=flaky.port)
    try:
        assert _health_after_refreshes(watched, "UP") <= 2
    finally:
        node[2].proc = node_flaky.proc


def test_a_script_in_a_name_or_rule_is_shown_escaped_and_never_runs(watched: Watched) -> None:
    page, g = watched.page, watched.g
    raw = httpx.get(g.admin + "/dashboard/routers", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert EVIL not in raw and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in raw
    page.goto(g.admin + "/dashboard/routers")
    watched.refreshed()
    page.click(f"main a:text-is('{EVIL}')")
    assert page.text_content("h1") == f"Router {EVIL}"
    assert EVIL in page.text_content("main code")
    watched.refreshed()
    assert page.evaluate("window.pwned") is None and not watched.dialogs


def test_csp_header_is_strict_and_the_browser_reports_no_violation(watched: Watched) -> None:
    page, g = watched.page, watched.g
    response = page.goto(g.admin + "/dashboard/services")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    watched.refreshed()
    assert not [m for m in watched.console if "Content Security Policy" in m or "pageerror" in m], watched.console
    asset = page.eval_on_selector("script", "s => s.src")
    assert "immutable" in httpx.get(asset, timeout=10).headers["cache-control"]


def test_reload_button_reloads_and_a_post_without_csrf_is_refused(watched: Watched) -> None:
    page, g = watched.page, watched.g
    before = api_get(g, "/api/gateway/health").json()["generation"]
    page.goto(g.admin + "/dashboard/")
    page.click("#reload")
    page.wait_for_url("**/dashboard/?reload=ok")
    assert page.text_content("#notice") == "Reloaded."
    assert api_get(g, "/api/gateway/health").json()["generation"] == before + 1
    for form in ({}, {"csrf": "forged"}):
        r = watched.context.request.post(g.admin + "/dashboard/reload", form=form, max_redirects=0)
        assert r.status == 403, (form, r.status)
    assert api_get(g, "/api/gateway/health").json()["generation"] == before + 1
    r = httpx.post(g.admin + "/dashboard/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 403                 # a Bearer client has no session: it uses /api/gateway/reload


