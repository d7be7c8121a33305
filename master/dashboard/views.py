"""The dashboard's pages as HTML, one function per page, from the admin API's ``NodeView`` and the rolling windows.

Each page is a ``Page``: its title, controls that stay put (search, the reload form) and the live part the
script swaps every 2 s (the same HTML a browser without script gets on a full load). Every value goes through
``html.e``; objects are redacted (``redact``) before they are shown.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ...shared.config.redact import redact
from .html import Markup, e, join, link, obj_link, table, tag
from .svg import sparkline
from .windows import Figures, Windows

if TYPE_CHECKING:
    from ..admin import NodeView

CERT_WARN_DAYS = 21


@dataclass
class Page:
    title: str
    live: Markup
    controls: Markup = Markup("")


def _ms(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds * 1000:.1f} ms"


def _ago(unix: float | None) -> str | None:
    if unix is None:
        return None
    return f"{max(0.0, time.time() - unix):.0f} s ago"


def _health(state: str) -> Markup:
    word = "UP" if state == "up" else "DOWN"
    return tag("span", word, class_=f"health {state}")


def _figures(f: Figures) -> list[object]:
    return [f"{f.rate:.2f}", f"{f.pct_4xx:.1f} %", f"{f.pct_5xx:.1f} %", _ms(f.p50), _ms(f.p99),
            sparkline(f.series, label="requests per second")]


FIGURE_HEADERS = ["req/s", "4xx", "5xx", "p50", "p99", "last minute"]


def _matches(q: str, *fields: object) -> bool:
    q = q.lower()
    return not q or any(q in str(f).lower() for f in fields)


def _search(q: str, placeholder: str) -> Markup:
    return tag("form", tag("input", type="search", name="q", value=q, placeholder=placeholder,
                           aria_label="filter", id="q"),
               tag("button", "Filter", type="submit"), method="get", class_="search")


def _dl(pairs: list[tuple[str, object]]) -> Markup:
    return tag("dl", join(Markup(tag("dt", k) + tag("dd", v)) for k, v in pairs))


def _protocol(view: NodeView, router: dict[str, Any]) -> str:
    eps = view.config["entrypoints"]
    protocols = {eps.get(ep, {}).get("protocol", "http") for ep in router["entrypoints"]}
    return "tcp" if "tcp" in protocols else "udp" if "udp" in protocols else "http"


def _days_left(cert: dict[str, Any]) -> int | None:
    """Whole days until a certificate's ``not_after`` (negative once expired); None when unknown."""
    if not cert.get("not_after"):
        return None
    return (datetime.datetime.fromisoformat(cert["not_after"]) - datetime.datetime.now(datetime.UTC)).days


def overview(view: NodeView, windows: Windows, csrf: str | None, notice: str | None) -> Page:
    health = view.gateway.health()
    cfg = view.config
    routers = view.items("routers")
    by_protocol = {p: sum(1 for r in routers if _protocol(view, r) == p) for p in ("http", "tcp", "udp")}
    services = view.items("services")
    down = [s["name"] for s in services if s["health"] == "down"]
    totals = table(["routers (HTTP / TCP / UDP)", "services (down)", "middlewares", "entrypoints"], [[
        f"{len(routers)} ({by_protocol['http']} / {by_protocol['tcp']} / {by_protocol['udp']})",
        f"{len(services)} ({len(down)})", len(cfg["middlewares"]), len(cfg["entrypoints"])]], class_="totals")
    warnings = [f"service {n} is DOWN" for n in down]
    for cert in view.certificates():
        left = _days_left(cert)
        if cert.get("error"):
            warnings.append(f"certificate {cert.get('cert_file')}: {cert['error']}")
        elif left is not None and left < CERT_WARN_DAYS:
            warnings.append(f"certificate {', '.join(cert.get('names') or [])} expires in {left} days")
    static = view.static
    features = [("ACME", bool(static.get("acme"))), ("access log", static["access_log"].get("enabled", False)),
                ("tracing", static["tracing"].get("enabled", False)),
                ("admin token", bool(static["admin"].get("token")))]
    reload = health["last_reload"]
    workers = health["workers"]
    providers = view.providers()
    live = join([
        tag("h2", "Totals"), totals,
        tag("h2", "Warnings"),
        tag("ul", join(tag("li", w) for w in warnings), class_="warnings") if warnings else tag("p", "None."),
        tag("h2", "Entrypoints"),
        table(["name", "address", "protocol", "routers"],
              [[ep["name"], ep.get("address"), ep.get("protocol", "http"), len(ep["routers"])]
               for ep in view.items("entrypoints")]),
        tag("h2", "Features"),
        table(["feature", "state"], [[name, "on" if on else "off"] for name, on in features]),
        tag("h2", "Providers"),
        table(["name", "last sync", "last error"],
              [[p["name"], _ago(p.get("last_sync")), p.get("last_error")] for p in redact(providers)]),
        tag("h2", "Workers"),
        tag("p", f"{sum(1 for w in workers if w['alive'])} of {len(workers)} alive, "
                 f"{sum(w['restarts'] for w in workers)} restarts. ", link("/dashboard/workers", "Details")),
        tag("h2", "Last reload"),
        _dl([("result", "ok" if reload.get("ok") else "failed"), ("when", _ago(reload.get("at"))),
             ("generation", health["generation"]),
             ("errors", join((tag("div", x) for x in redact(reload.get("errors") or [])), ) or None)]),
    ])
    controls = Markup("")
    if csrf is not None:
        controls = tag("form", tag("input", type="hidden", name="csrf", value=csrf),
                       tag("button", "Reload config", type="submit", id="reload"),
                       method="post", action="/dashboard/reload", class_="reload")
    else:
        controls = tag("p", "Reload from here needs admin.token (or send SIGHUP).", class_="note")
    if notice:
        controls = join([tag("p", notice, class_="notice", id="notice"), controls])
    return Page("Overview", live, controls)


def routers(view: NodeView, windows: Windows, q: str) -> Page:
    rows = []
    for r in view.items("routers"):
        if _matches(q, r["name"], r["rule"], r["service"], r["provider"]):
            rows.append([obj_link("routers", r["name"]), tag("code", r["rule"]), r.get("priority"),
                         join(r["entrypoints"], ", "), obj_link("services", r["service"]),
                         join((obj_link("middlewares", m) for m in r["middlewares"]), ", "), r["provider"],
                         *_figures(windows.figures("routers", r["name"]))])
    headers = ["name", "rule", "priority", "entrypoints", "service", "middlewares", "provider", *FIGURE_HEADERS]
    return Page("Routers", join([tag("p", f"{len(rows)} routers"), table(headers, rows, class_="list")]),
                _search(q, "name, rule, service"))


def router(view: NodeView, windows: Windows, name: str) -> Page | None:
    r = view.item("routers", name)
    if r is None:
        return None
    f = windows.figures("routers", name)
    fields = [("rule", tag("code", r["rule"])), ("priority", r.get("priority")),
              ("entrypoints", join(r["entrypoints"], ", ")), ("service", obj_link("services", r["service"])),
              ("middleware chain", join((obj_link("middlewares", m) for m in r["middlewares"]), " → ") or None),
              ("provider", r["provider"])]
    live = join([_dl(fields), tag("h2", "Last minute"), table(FIGURE_HEADERS + ["last request"],
                                                              [[*_figures(f), _ago(f.last_request)]]),
                 sparkline(f.series, width=480, height=60, label="requests per second")])
    return Page(f"Router {name}", live)


def services(view: NodeView, windows: Windows, q: str) -> Page:
    rows = []
    for s in view.items("services"):
        if not _matches(q, s["name"], s["kind"], s["provider"]):
            continue
        servers = s.get("servers", [])
        up = f"{sum(1 for x in servers if x['health'] == 'up')} / {len(servers)}" if s["kind"] == "load_balancer" \
            else None
        rows.append([obj_link("services", s["name"]), s["kind"], _health(s["health"]), up,
                     sum(x["inflight"] for x in servers), s["provider"],
                     *_figures(windows.figures("services", s["name"]))])
    headers = ["name", "kind", "health", "servers up", "in-flight", "provider", *FIGURE_HEADERS]
    return Page("Services", join([tag("p", f"{len(rows)} services"), table(headers, rows, class_="list")]),
                _search(q, "name, kind"))


def _tree(view: NodeView, name: str, seen: frozenset[str]) -> Markup:
    """A service and what it sends to: weighted children with weights, failover primary then fallback,
    load-balancer servers with their health, nested as the workers pick."""
    s = view.item("services", name)
    if s is None or name in seen:
        return tag("li", name, " (unknown or a cycle)")
    seen = seen | {name}
    head = join([obj_link("services", name), " ", s["kind"], " ", _health(s["health"])])
    if s["kind"] == "weighted":
        kids = [join([f"weight {c['weight']}: ", _tree(view, c["name"], seen)]) for c in s["services"]]
    elif s["kind"] == "failover":
        kids = [join([role + ": ", _tree(view, s[key]["name"], seen)])
                for role, key in (("primary", "service"), ("fallback", "fallback"))]
    else:
        kids = [join([tag("code", x["url"]), " ", _health(x["health"])]) for x in s["servers"]]
    return tag("li", head, tag("ul", join(tag("li", k) for k in kids)))


def service(view: NodeView, windows: Windows, name: str) -> Page | None:
    s = view.item("services", name)
    if s is None:
        return None
    s = redact(s)
    f = windows.figures("services", name)
    parts = [_dl([("kind", s["kind"]), ("health", _health(s["health"])), ("provider", s["provider"]),
                  ("routers", join((obj_link("routers", r) for r in s["routers"]), ", ") or None)]),
             tag("h2", "Last minute"), table(FIGURE_HEADERS, [_figures(f)]),
             tag("h2", "Tree"), tag("ul", _tree(view, name, frozenset()), class_="tree")]
    if s["kind"] == "load_balancer":
        parts += [tag("h2", "Servers"), table(
            ["url", "weight", "health", "in-flight", "requests", "consecutive failures", "ejected for", "check"],
            [[tag("code", x["url"]), x.get("weight"), _health(x["health"]), x["inflight"], x["requests"],
              x["passive"]["consecutive_failures"],
              f"{x['passive']['down_for_s']:.1f} s" if x["passive"]["down_for_s"] else None,
              (x["health_check"] or {}).get("last_error") or ("ok" if x["health_check"] else None)]
             for x in s["servers"]], class_="servers")]
    if s["circuit_breakers"]:
        parts += [tag("h2", "Circuit breakers"), table(
            ["middleware", "state", "trips", "consecutive failures"],
            [[obj_link("middlewares", b["middleware"]), b["state"], b["trips"], b["consecutive_failures"]]
             for b in s["circuit_breakers"]])]
    return Page(f"Service {name}", join(parts))


def middlewares(view: NodeView, windows: Windows, q: str) -> Page:
    rows = [[obj_link("middlewares", m["name"]), m["type"], join((obj_link("routers", r) for r in m["routers"]), ", "),
             join((f"{code}: {n}" for code, n in sorted(m["replies"].items())), ", ") or None]
            for m in view.items("middlewares") if _matches(q, m["name"], m["type"])]
    return Page("Middlewares", join([tag("p", f"{len(rows)} middlewares"),
                                     table(["name", "type", "routers", "rejections by status"], rows, class_="list")]),
                _search(q, "name, type"))


def middleware(view: NodeView, windows: Windows, name: str) -> Page | None:
    m = view.item("middlewares", name)
    if m is None:
        return None
    m = redact(m)
    settings = {k: v for k, v in m.items() if k not in ("name", "routers", "replies", "circuit_breaker")}
    parts = [_dl([("type", m["type"]), ("routers", join((obj_link("routers", r) for r in m["routers"]), ", ") or None),
                  ("rejections by status", join((f"{c}: {n}" for c, n in sorted(m["replies"].items())), ", ")
                   or None)]),
             tag("h2", "Settings (secrets redacted)"),
             tag("pre", orjson.dumps(settings, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())]
    if "circuit_breaker" in m:
        cb = m["circuit_breaker"]
        parts += [tag("h2", "Circuit breaker"), _dl([(k.replace("_", " "), v) for k, v in cb.items()])]
    return Page(f"Middleware {name}", join(parts))


def workers(view: NodeView, windows: Windows, q: str) -> Page:
    rows = [[w["slot"], w["pid"], "alive" if w["alive"] else "dead", w["generation"], w["restarts"],
             f"{w['uptime_secs']:.0f} s",
             None if w["heartbeat_age_secs"] is None else f"{w['heartbeat_age_secs']:.1f} s"]
            for w in view.gateway.health()["workers"]]
    return Page("Workers", table(["slot", "pid", "state", "generation", "restarts", "uptime", "heartbeat age"], rows))


def certificates(view: NodeView, windows: Windows, q: str) -> Page:
    """Certificate files of the static config and ACME orders: names, expiry, where served, and trouble."""
    rows = []
    for cert in redact(view.certificates()):
        names = ", ".join(cert.get("names") or [])
        if not _matches(q, names, cert.get("cert_file"), cert["source"]):
            continue
        left = _days_left(cert)
        state = cert.get("error") or cert.get("last_error") or cert.get("status") or "ok"
        expiry = None if left is None else join([cert["not_after"][:10], " ", tag(
            "span", f"{left} days", class_="health down" if left < CERT_WARN_DAYS else "health up")])
        rows.append([cert["source"], names or None, expiry, join(cert.get("entrypoints") or [], ", ") or None,
                     tag("code", cert["cert_file"]) if cert.get("cert_file") else None, state])
    headers = ["source", "names", "expires", "entrypoints", "file", "state"]
    return Page("Certificates", join([tag("p", f"{len(rows)} certificates"), table(headers, rows, class_="list")]),
                _search(q, "name, file"))


def providers(view: NodeView, windows: Windows, q: str) -> Page:
    """Where the config comes from, each source's last sync and its trouble (secrets redacted)."""
    rows = []
    for p in redact(view.providers()):
        if not _matches(q, p["name"]):
            continue
        connected = p.get("connected")
        notes = [*(p.get("problems") or []), *([p["warning"]] if p.get("warning") else [])]
        rows.append([p["name"], None if connected is None else _health("up" if connected else "down"),
                     _ago(p.get("last_sync")), p.get("syncs"), p.get("objects"), p.get("last_error"),
                     join(tag("div", x) for x in notes) or None])
    headers = ["name", "connected", "last sync", "syncs", "objects", "last error", "problems"]
    return Page("Providers", join([tag("p", f"{len(rows)} providers"), table(headers, rows, class_="list")]),
                _search(q, "name"))


DECISIONS_SHOWN = 5


def _rollout(rollout: dict[str, Any] | None) -> Markup:
    if rollout is None:
        return Markup("")
    steps = rollout.get("steps") or []
    last = steps[-1] if steps else {}
    return join([tag("h3", "Rollout"), _dl([
        ("from → to", f"{rollout.get('from')} → {rollout.get('to')}"),
        ("progress", tag("progress", f"{rollout.get('percent')} %", value=rollout.get("percent"), max=100)),
        ("traffic to the new revision", f"{rollout.get('percent')} %"), ("state", rollout.get("state")),
        ("reason", rollout.get("reason")), ("last step", last.get("verdict"))])])


def _cluster(cluster: dict[str, Any] | None) -> Markup:
    if cluster is None:
        return tag("p", "This node decides alone (no [serving] redis_url).", class_="note")
    return _dl([("this node", cluster["node"]), ("role", cluster["role"]), ("lease holder", cluster["leader"]),
                ("Redis failures", cluster["errors"]), ("last error", cluster["last_error"])])


def _executor(rev: dict[str, Any]) -> Markup:
    ex = rev["executor"]
    trouble = rev.get("failing") or ex.get("last_error")
    return join([ex["kind"], f" · {ex['errors']} errors" if ex["errors"] else "",
                 tag("div", trouble, class_="error") if trouble else ""])


def serving(view: NodeView, windows: Windows, q: str) -> Page:
    """Served services: each revision's instances, load, autoscaler state and last decisions, the rollout, and
    this node's part in a cluster; from the serving controller's memory alone (no plane scan, no other state)."""
    now = time.monotonic()
    parts = []
    served = redact(view.gateway.serving())
    for name, svc in sorted(served.items()):
        revisions = {r: rev for r, rev in svc["revisions"].items() if _matches(q, name, r, rev["executor"]["kind"])}
        if not revisions:
            continue
        rows, decided = [], []
        for r, rev in revisions.items():
            cluster = rev.get("cluster") or {}
            rows.append([r, rev["desired"], rev["ready"], rev["starting"], rev["in_flight"], rev["queued"],
                         rev["stable_concurrency"], rev["panic_concurrency"],
                         tag("span", "panic", class_="health down") if rev["panicking"] else "stable",
                         rev["target"], cluster.get("desired"), _executor(rev)])
            decided += [[r, f"{max(0.0, now - d['at']):.0f} s ago", d["desired"], d["ready"], d["reason"]]
                        for d in reversed(rev["decisions"][-DECISIONS_SHOWN:])]
        parts += [tag("h2", obj_link("services", name)), _cluster(svc.get("cluster")), _rollout(svc.get("rollout")),
                  table(["revision", "desired", "ready", "starting", "in flight", "queued", "stable concurrency",
                         "panic concurrency", "mode", "target", "cluster-wide desired", "executor"], rows,
                        class_="list revisions"),
                  tag("h3", "Last decisions"),
                  table(["revision", "when", "desired", "ready", "reason"], decided, class_="decisions")]
    if not parts:
        parts = [tag("p", "No served service matches." if q and served else "No served service.")]
    return Page("Serving", join(parts), _search(q, "service, revision, executor"))


NAV = (("/dashboard/", "Overview"), ("/dashboard/routers", "Routers"), ("/dashboard/services", "Services"),
       ("/dashboard/serving", "Serving"), ("/dashboard/middlewares", "Middlewares"),
       ("/dashboard/certificates", "Certificates"), ("/dashboard/providers", "Providers"),
       ("/dashboard/workers", "Workers"))


def document(title: str, body: Markup, assets: dict[str, str]) -> str:
    """A whole page: head with the content-hashed stylesheet and script, navigation, then ``body``."""
    nav = tag("nav", join(link(href, text) for href, text in NAV))
    return "<!doctype html>" + tag(
        "html",
        tag("head", Markup('<meta charset="utf-8">'),
            Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
            tag("title", f"{title} · a3s-gateway"),
            Markup(f'<link rel="stylesheet" href="{e(assets["dashboard.css"])}">'),
            tag("script", src=assets["dashboard.js"], defer="")),
        tag("body", tag("header", tag("strong", "a3s-gateway"), nav), tag("h1", title), body),
        lang="en")


def page_body(page: Page) -> Markup:
    """The page's controls, then its live region (what the script refreshes)."""
    return join([page.controls, tag("main", page.live, id="live")])


def login_body(error: str | None) -> Markup:
    return join([tag("p", error, class_="error", id="error") if error else "",
                 tag("form", tag("label", "Admin token ", tag("input", type="password", name="token", id="token",
                                                               autocomplete="current-password", required="")),
                     tag("button", "Log in", type="submit", id="login"), method="post", action="/dashboard/login")])
