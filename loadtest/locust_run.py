#!/usr/bin/env python3
"""Run the locust harness against a real gateway on 127.0.0.1, and write a report.

    python loadtest/locust_run.py [--profile smoke|proxy|large|auth|sse|ws|mixed|all] [--users N]
                                  [--spawn-rate R] [--run-time S] [--workers N] [--out DIR] [--gateway CMD]
    python loadtest/locust_run.py origin --port PORT      # the origin backend alone (used by the runner)

The runner starts the origin backend (aiohttp, in its own process), writes a gateway config routing the
scenario prefixes of ``locustfile.py`` to it (``/auth`` through the ``jwt`` and ``rate-limit`` middlewares,
only when the profile uses it), starts ``a3s-gateway --workers N`` on a free 127.0.0.1 port, runs
``locust --headless`` for ``--run-time`` seconds, then stops the gateway (SIGTERM) and the origin.

Output folder (default ``loadtest/out/<profile>-<timestamp>``): ``locust_stats.csv``, ``locust_failures.csv``,
``locust_stats_history.csv``, ``locust_exceptions.csv``, ``report.html``, ``gateway.toml``, ``gateway.log``,
``origin.log``, ``locust.log``, and ``summary.json`` / ``summary.txt`` (req/s, p50/p95/p99, failures per
request name and in total). Exit status: 0 when locust ran and no request failed, 1 otherwise.

Every address used is on 127.0.0.1; locust's run is bounded by ``--run-time`` and every wait has a deadline.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"

PROFILES: dict[str, list[str]] = {
    "smoke": ["PlainProxyUser", "LargeBodyUser"],
    "proxy": ["PlainProxyUser"],
    "large": ["LargeBodyUser"],
    "auth": ["AuthRateLimitUser"],
    "sse": ["SseUser"],
    "ws": ["WebSocketUser"],
    "mixed": ["MixedUser"],
    "all": ["PlainProxyUser", "LargeBodyUser", "AuthRateLimitUser", "SseUser", "WebSocketUser"],
}
NEEDS_AUTH = {"AuthRateLimitUser", "MixedUser"}
JWT_SECRET = "loadtest-secret-change-me"


# ------------------------------------------------------------------------------------------- origin


def serve_origin(port: int) -> None:
    """The origin behind the gateway: fixed small bodies, echo, blobs, SSE and a WebSocket echo."""
    import asyncio

    from aiohttp import WSMsgType, web

    blob = bytes(range(256)) * 4096 * 4  # 4 MiB to slice from

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=b"hello\n", content_type="text/plain")

    async def items(request: web.Request) -> web.Response:
        return web.json_response({"page": request.query.get("page"), "items": list(range(10))})

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.Response(body=body, content_type="application/octet-stream")

    async def download(request: web.Request) -> web.Response:
        size = min(int(request.query.get("size", "1048576")), len(blob))
        return web.Response(body=blob[:size], content_type="application/octet-stream")

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"subject": request.headers.get("X-JWT-Subject")})

    async def sse(request: web.Request) -> web.StreamResponse:
        events = int(request.query.get("events", "20"))
        interval = int(request.query.get("interval_ms", "50")) / 1000
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for i in range(events):
            await resp.write(f'id: {i}\nevent: tick\ndata: {{"n": {i}}}\n\n'.encode())
            await asyncio.sleep(interval)
        await resp.write_eof()
        return resp

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application(client_max_size=64 << 20)
    app.add_routes(
        [
            web.get("/plain/hello", hello),
            web.get("/plain/items", items),
            web.get("/plain/ready", hello),
            web.post("/large/echo", echo),
            web.get("/large/blob", download),
            web.get("/auth/me", me),
            web.get("/sse/stream", sse),
            web.get("/ws/echo", ws_echo),
        ]
    )
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024)


# ------------------------------------------------------------------------------------------- runner


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def gateway_config(port: int, origin_port: int, classes: list[str], workers_note: str) -> str:
    routers = ["plain", "large", "sse", "ws"]
    text = [
        f"# written by loadtest/locust_run.py ({workers_note})",
        "[entrypoints.web]",
        f'address = "127.0.0.1:{port}"',
        "",
        "[admin]",
        "enabled = false",
        "",
        "[services.origin.load_balancer]",
        f'servers = [{{ url = "http://127.0.0.1:{origin_port}" }}]',
        "",
    ]
    for name in routers:
        text += [f"[routers.{name}]", f'rule = "PathPrefix(`/{name}`)"', 'service = "origin"', ""]
    if NEEDS_AUTH & set(classes):
        text += [
            "[routers.auth]",
            'rule = "PathPrefix(`/auth`)"',
            'service = "origin"',
            'middlewares = ["jwt", "rate-limit"]',
            "",
            "[middlewares.jwt]",
            'type = "jwt"',
            f'value = "{JWT_SECRET}"',
            "",
            "[middlewares.rate-limit]",
            'type = "rate-limit"',
            f"rate = {int(os.environ.get('LOADTEST_RATE', '2000'))}",
            f"burst = {int(os.environ.get('LOADTEST_BURST', '500'))}",
            "",
        ]
    return "\n".join(text)


def gateway_command(explicit: str | None) -> list[str]:
    if explicit:
        return explicit.split()
    beside = Path(sys.executable).with_name("a3s-gateway")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("a3s-gateway")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from a3s_gateway.master.cli import main; sys.exit(main())"]


def locust_command() -> list[str]:
    beside = Path(sys.executable).with_name("locust")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "locust"]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 45.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return None
    return proc.returncode


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def summarize(out: Path, meta: dict) -> dict:
    rows = list(csv.DictReader((out / "locust_stats.csv").open()))
    per_name = []
    total = None
    for row in rows:
        entry = {
            "type": row["Type"],
            "name": row["Name"],
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "req_per_s": round(_float(row["Requests/s"]), 1),
            "p50_ms": _float(row["50%"]),
            "p95_ms": _float(row["95%"]),
            "p99_ms": _float(row["99%"]),
            "max_ms": round(_float(row["Max Response Time"]), 1),
        }
        if row["Name"] == "Aggregated":
            total = entry
        else:
            per_name.append(entry)
    summary = {**meta, "total": total, "requests": per_name}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    title = (
        f"a3s-gateway locust run: profile {meta['profile']} ({', '.join(meta['user_classes'])}), "
        f"{meta['users']} users, {meta['run_time_s']} s, {meta['gateway_workers']} gateway workers"
    )
    lines = [
        title,
        f"{'name':44} {'reqs':>8} {'fails':>6} {'req/s':>8} {'p50':>7} {'p95':>7} {'p99':>7}",
    ]
    for e in [*per_name, *([total] if total else [])]:
        lines.append(
            f"{(e['type'] + ' ' + e['name']).strip()[:44]:44} {e['requests']:>8} {e['failures']:>6} "
            f"{e['req_per_s']:>8} {e['p50_ms']:>7.0f} {e['p95_ms']:>7.0f} {e['p99_ms']:>7.0f}"
        )
    lines.append(f"gateway exit status: {meta['gateway_exit']}; locust exit status: {meta['locust_exit']}")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return summary


def run(args: argparse.Namespace) -> int:
    classes = PROFILES[args.profile]
    out = Path(args.out or HERE / "out" / f"{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    args.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    origin_port, port = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    logs = []
    meta: dict = {
        "profile": args.profile,
        "user_classes": classes,
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "run_time_s": args.run_time,
        "gateway_workers": args.workers,
        "gateway_exit": None,
        "locust_exit": None,
    }
    try:
        origin_log = (out / "origin.log").open("w")
        logs.append(origin_log)
        origin = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "origin", "--port", str(origin_port)],
            stdout=origin_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(origin)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{origin_port}/plain/ready"), "the origin", 30, origin)

        config = out / "gateway.toml"
        config.write_text(gateway_config(port, origin_port, classes, f"{args.workers} workers"))
        gateway_log = (out / "gateway.log").open("w")
        logs.append(gateway_log)
        gateway = subprocess.Popen(
            [
                *gateway_command(args.gateway),
                "--config",
                str(config),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            stdout=gateway_log,
            stderr=subprocess.STDOUT,
            cwd=out,
        )
        procs.append(gateway)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/plain/ready"), "the gateway", 60, gateway)

        env = {**os.environ, "LOADTEST_JWT_SECRET": JWT_SECRET}
        cmd = [
            *locust_command(),
            "-f", str(LOCUSTFILE),
            "--headless",
            "--host", f"http://127.0.0.1:{port}",
            "--users", str(args.users),
            "--spawn-rate", str(args.spawn_rate),
            "--run-time", f"{args.run_time}s",
            "--stop-timeout", "10",
            "--csv", str(out / "locust"),
            "--csv-full-history",
            "--html", str(out / "report.html"),
            "--only-summary",
            "--loglevel", "WARNING",
            *classes,
        ]  # fmt: skip
        with (out / "locust.log").open("w") as locust_log:
            locust = subprocess.run(
                cmd,
                stdout=locust_log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=out,
                timeout=args.run_time + 120,
                check=False,
            )
        meta["locust_exit"] = locust.returncode
        meta["gateway_exit"] = stop(gateway)
    finally:
        for proc in reversed(procs):
            stop(proc, timeout=45)
        for f in logs:
            f.close()

    summary = summarize(out, meta)
    print((out / "summary.txt").read_text(), end="")
    print(f"report: {out}")
    total = summary["total"] or {}
    ok = meta["locust_exit"] == 0 and total.get("requests", 0) > 0 and total.get("failures", 1) == 0
    return 0 if ok else 1


def _run_reporting_start_failures(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except RuntimeError as e:
        # A process that did not come up: say which, and show the end of its log (e.g. a config the gateway rejects).
        print(f"locust_run.py: {e}", file=sys.stderr)
        out = Path(args.out) if args.out else None
        for name in ("gateway.log", "origin.log"):
            if out is not None and (out / name).exists():
                print(f"--- {name} (end) ---\n{(out / name).read_text()[-2000:]}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["origin"]:
        ap = argparse.ArgumentParser(prog="locust_run.py origin")
        ap.add_argument("--port", type=int, required=True)
        serve_origin(ap.parse_args(argv[1:]).port)
        return 0
    ap = argparse.ArgumentParser(prog="locust_run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--spawn-rate", type=float, default=10)
    ap.add_argument("--run-time", type=int, default=30, help="seconds of load")
    ap.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    ap.add_argument("--out", help="output folder (default loadtest/out/<profile>-<timestamp>)")
    ap.add_argument("--gateway", help="gateway command (default: a3s-gateway beside this python, or on PATH)")
    return _run_reporting_start_failures(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
