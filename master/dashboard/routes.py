"""The dashboard's HTTP side on the admin listener: ``/`` and ``/dashboard/*``.

Who may look is decided as for the admin API (nothing to check without ``admin.token``, which the config allows
only on loopback), plus a session cookie from the login form so a browser needs no Authorization header. Pages
answer with a strict Content-Security-Policy (``default-src 'self'``; the one script and stylesheet are files under
content-hashed names, cached for a year); ``?fragment=live`` answers only a page's live region, which the script
swaps every 2 s. The one action, reload, is a POST that must carry the session's CSRF token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...shared.errors import StateError
from .. import admin as admin_api  # admin imports this module: read its names at call time
from . import views
from .html import Markup
from .sessions import COOKIE, TTL_S, Session, Sessions, token_matches
from .windows import Windows

if TYPE_CHECKING:
    from ..gateway import Gateway

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
TYPES = {".js": "text/javascript", ".css": "text/css"}
OPEN = ("/dashboard/login", "/dashboard/static/")

ListView = Callable[["admin_api.NodeView", Windows, str], views.Page]
DetailView = Callable[["admin_api.NodeView", Windows, str], views.Page | None]
LISTS: dict[str, ListView] = {"routers": views.routers, "services": views.services,
                              "serving": views.serving, "middlewares": views.middlewares,
                              "certificates": views.certificates,
                              "providers": views.providers, "workers": views.workers}
DETAILS: dict[str, DetailView] = {"routers": views.router, "services": views.service,
                                  "middlewares": views.middleware}


def handles(path: str) -> bool:
    """Paths the dashboard answers (and authorizes) itself, outside the admin API's Bearer check."""
    return path == "/" or path == "/dashboard" or path.startswith("/dashboard/")


def _assets() -> tuple[dict[str, str], dict[str, tuple[bytes, str]]]:
    """The static files by their plain name → content-hashed URL, and URL name → (body, content type)."""
    urls, files = {}, {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        body = item.read_bytes()
        stem, _, ext = item.name.rpartition(".")
        hashed = f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{ext}"
        urls[item.name] = f"/dashboard/static/{hashed}"
        files[hashed] = (body, TYPES.get("." + ext, "application/octet-stream"))
    return urls, files


class Dashboard:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.sessions = Sessions()
        self.windows = Windows(gateway)
        self.asset_urls, self.asset_files = _assets()

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/dashboard", self.root)
        r.add_get("/dashboard/", self.overview)
        r.add_get("/dashboard/login", self.login_form)
        r.add_post("/dashboard/login", self.login)
        r.add_post("/dashboard/reload", self.reload)
        r.add_get("/dashboard/static/{file}", self.static)
        for kind in LISTS:
            r.add_get(f"/dashboard/{kind}", self.list_page)
        for kind in DETAILS:
            r.add_get(f"/dashboard/{kind}/{{name}}", self.detail_page)

    async def stop(self) -> None:
        await self.windows.stop()

    # -- who is asking
    def _token(self) -> str | None:
        return (self.gateway.config().data.get("admin") or {}).get("token")

    def _session(self, request: web.Request) -> Session | None:
        token = self._token()
        return self.sessions.get(request.cookies.get(COOKIE), token) if token else None

    def allowed(self, request: web.Request) -> bool:
        """Open without a token; else a live session cookie or ``Authorization: Bearer <token>``."""
        token = self._token()
        if not token or request.path.startswith(OPEN):
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token_matches(given.strip(), token):
            return True
        return self._session(request) is not None

    async def guard(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Called by the admin server's middleware for every dashboard path: refused requests go to the login
        page (a fragment request gets 401, so the script can send the person there)."""
        if not self.allowed(request):
            if request.method == "GET" and "fragment" not in request.query:
                raise web.HTTPSeeOther("/dashboard/login", headers=HEADERS)
            return self._html("<!doctype html><p>Log in first.</p>", 401)
        return await handler(request)

    # -- responses
    def _html(self, text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)

    def _page(self, request: web.Request, page: views.Page, status: int = 200) -> web.Response:
        self.windows.want()
        if request.query.get("fragment") == "live":
            return self._html(page.live, status)
        return self._html(views.document(page.title, views.page_body(page), self.asset_urls), status)

    def _not_found(self, what: str) -> web.Response:
        return self._html(views.document("Not found", Markup(f"<p>{views.e(what)}</p>"), self.asset_urls), 404)

    # -- pages
    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard/")

    async def overview(self, request: web.Request) -> web.Response:
        session = self._session(request)
        notice = {"ok": "Reloaded.", "failed": "Reload failed: the old config keeps serving (see Last reload).",
                  "busy": "A reload is already running."}.get(request.query.get("reload", ""))
        page = views.overview(admin_api.NodeView(self.gateway), self.windows, session.csrf if session else None, notice)
        return self._page(request, page)

    async def list_page(self, request: web.Request) -> web.Response:
        kind = request.path.split("/")[2]         # /dashboard/<kind>
        view = admin_api.NodeView(self.gateway)
        return self._page(request, LISTS[kind](view, self.windows, request.query.get("q", "")))

    async def detail_page(self, request: web.Request) -> web.Response:
        kind, name = request.path.split("/")[2], request.match_info["name"]
        page = DETAILS[kind](admin_api.NodeView(self.gateway), self.windows, name)
        return self._not_found(f"No {kind[:-1]} named {name}.") if page is None else self._page(request, page)

    async def static(self, request: web.Request) -> web.Response:
        found = self.asset_files.get(request.match_info["file"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, headers={
            **HEADERS, "Cache-Control": "public, max-age=31536000, immutable"})

    # -- login and the one action
    async def login_form(self, request: web.Request) -> web.Response:
        if not self._token():
            raise web.HTTPSeeOther("/dashboard/")
        return self._html(views.document("Log in", views.login_body(None), self.asset_urls))

    async def login(self, request: web.Request) -> web.Response:
        token = self._token()
        if not token:
            raise web.HTTPSeeOther("/dashboard/")
        form: Any = await request.post()
        if not token_matches(str(form.get("token", "")), token):
            return self._html(views.document("Log in", views.login_body("Wrong token."), self.asset_urls), 401)
        resp = web.HTTPSeeOther("/dashboard/", headers=HEADERS)
        resp.set_cookie(COOKIE, self.sessions.open(token), path="/dashboard", max_age=int(TTL_S), httponly=True,
                        samesite="Strict", secure=request.secure)
        raise resp

    def _check_csrf(self, request: web.Request, form: Any) -> None:
        """A state change needs the session's CSRF token in the form (a Bearer client has no session and
        uses ``POST /api/gateway/reload`` instead)."""
        session = self._session(request)
        if session is None or not token_matches(str(form.get("csrf", "")), session.csrf):
            raise web.HTTPForbidden(text="missing or wrong CSRF token", headers=HEADERS)

    async def reload(self, request: web.Request) -> web.Response:
        self._check_csrf(request, await request.post())
        error = await self.gateway.request_reload("dashboard")
        outcome = "ok" if error is None else "busy" if isinstance(error, StateError) else "failed"
        raise web.HTTPSeeOther(f"/dashboard/?reload={outcome}", headers=HEADERS)
