"""The console's web application (Starlette): login, live incident list and map, incident pages, review.

Sessions are records on the server (:mod:`fusion.console.sessions`) named by a token in a signed
cookie (itsdangerous, through Starlette's SessionMiddleware; Secure under TLS): logout, a
disabled user or an idle limit ends one at its next request.  The role is read from the
database at each request, and every route needs a permission of :mod:`fusion.console.roles`'s
matrix: a role without it gets 403, and the refusal is an audit entry naming the user.
Every POST carries the session's CSRF token in a form field ``csrf`` and is refused (403)
without it.  Pages are Jinja2 templates with autoescaping: node ids, site names and reasons
holding markup are shown as text; the only scripts are the console's own static files and the
map library it serves (fusion.console.maproutes), and the Content-Security-Policy allows no
other.  Live revisions come from the service's :class:`fusion.server.live.Broadcast` and go to
browsers as server-sent events; a page reloads its list from ``/live`` and its map from
``/map/data`` when one arrives.

Example::

    app = console_app(store, registry, service.live, secret=secrets.token_bytes(32))
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import pathlib
import secrets

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fusion.console import roles
from fusion.console.accounts import Accounts
from fusion.console.admin import admin_routes
from fusion.console.casework_pages import CaseworkPages, incident_casework
from fusion.console.forms import CsrfRefused
from fusion.console.forms import checked_form as _checked_form
from fusion.console.forms import csrf_token as _csrf
from fusion.console.maproutes import MapRoutes
from fusion.console.oversight import oversight_routes
from fusion.console.reviews import ACTIONS, CLASSES, DISPOSITIONS, PERMITTED, Forbidden, InvalidAction, Reviews, no_audit
from fusion.console.sessions import DEFAULT_IDLE_S, Sessions

HERE = pathlib.Path(__file__).parent
log = logging.getLogger(__name__)
# An idle event stream sends a comment this often, so proxies keep it open and a gone browser is noticed.
KEEPALIVE_S = 15.0
# Revisions held for a slow browser before the oldest are dropped (it reloads the list anyway).
QUEUE_MAX = 100
SESSION_MAX_AGE_S = 12 * 3600
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
SEE_OTHER = 303


def utc(t_ns: int | None) -> str:
    """UTC to the millisecond, ISO 8601."""
    if t_ns is None:
        return ""
    return dt.datetime.fromtimestamp(t_ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["utc"] = utc
    return env


class Console:
    """The application's state and handlers."""

    def __init__(self, store, registry, live, on_action=None, idle_s: float = DEFAULT_IDLE_S, areas=None, city=None):
        self.store, self.registry, self.live = store, registry, live
        self.areas = areas   # the neighbourhood polygons (a GeoJSON path) of the dashboard and the unreported page, or None
        self.maps = MapRoutes(store, registry, city)   # the map's data, layers, tiles and library
        self.accounts = Accounts(store)
        self.sessions = Sessions(store, idle_s)
        self.audit = on_action or no_audit   # (actor, action, subject, body): the audit log's append
        self.reviews = Reviews(store, self.audit)
        self.env = _templates()

    # -- helpers ------------------------------------------------------------------------------
    def render(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        user = request.state.user if hasattr(request.state, "user") else None
        html = self.env.get_template(name).render(user=user, csrf=_csrf(request), **context)
        return HTMLResponse(html, status_code=status)

    def user(self, request: Request) -> dict | None:
        """The signed-in user (name, role, permissions) of a good session, else None."""
        name = self.sessions.user(request.session.get("sid"))
        role = self.accounts.role(name) if name else None
        if role is None:
            return None
        request.state.user = {"name": name, "role": role, "may": PERMITTED[role]}   # roles.MATRIX
        return request.state.user

    # -- pages --------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        form = await _checked_form(request)
        role = await asyncio.to_thread(self.accounts.authenticate, form.get("name", ""), form.get("password", ""))
        if role is None:
            self.audit(form.get("name", ""), "login-refused", "console", {})
            return self.render(request, "login.html", status=401, error="Wrong name or password.")
        self.audit(form["name"], "login", "console", {"role": role})
        token = await asyncio.to_thread(self.sessions.open, form["name"])
        request.session.clear()
        request.session.update(sid=token, csrf=secrets.token_urlsafe(32))   # a new token per session
        return RedirectResponse(request.url_for("index"), status_code=SEE_OTHER)

    async def logout(self, request: Request) -> Response:
        await _checked_form(request)
        self.audit(request.state.user["name"], "logout", "console", {})
        self.sessions.end(request.session.get("sid"), "logout")
        request.session.clear()
        return RedirectResponse(request.url_for("login"), status_code=SEE_OTHER)

    async def index(self, request: Request) -> Response:
        context = await asyncio.to_thread(self._live_context)
        return self.render(request, "index.html", map_config=self.maps.page_config(), **context)

    async def live_fragment(self, request: Request) -> Response:
        return self.render(request, "live.html", **await asyncio.to_thread(self._live_context))

    def _live_context(self) -> dict:
        incidents = list(reversed(self.store.incidents()))   # newest first
        return {"incidents": incidents, "reviews": self.reviews.latest()}

    async def incident(self, request: Request) -> Response:
        incident_id = request.path_params["incident"]
        context = await asyncio.to_thread(self._incident_context, incident_id)
        if context is None:
            return self.render(request, "missing.html", status=404, incident_id=incident_id)
        return self.render(request, "incident.html", **context)

    def _incident_context(self, incident_id: str) -> dict | None:
        inc = self.store.incident(incident_id)
        if inc is None:
            return None
        pulses = self.store.incident_pulses(incident_id)
        return {"inc": inc, "shots": sorted(inc.get("shots", []), key=lambda s: s["t_ns"]), "pulses": pulses,
                "heard": _heard(pulses),
                "actions": self.reviews.of(incident_id), "map_config": self.maps.page_config(incident_id),
                "review_actions": ACTIONS, "classes": CLASSES, "dispositions": DISPOSITIONS,
                **incident_casework(self.store, inc, pulses)}

    async def review(self, request: Request) -> Response:
        form = await _checked_form(request)
        user, incident_id = request.state.user, request.path_params["incident"]
        inc = self.store.incident(incident_id)
        if inc is None:
            return PlainTextResponse("no such incident", status_code=404)
        try:
            if request.url.path.endswith("/disposition"):
                self.reviews.disposition(user["name"], user["role"], incident_id, form.get("disposition", ""),
                                         form.get("note", ""))
            else:
                self.reviews.review(user["name"], user["role"], incident_id, _reviewed(form, inc), form.get("action", ""),
                                    form.get("reason", ""), form.get("class") or None)
        except Forbidden as exc:
            return self.refuse(request, form.get("action") or "disposition", str(exc))
        except InvalidAction as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return RedirectResponse(request.url_for("incident", incident=incident_id), status_code=SEE_OTHER)

    def refuse(self, request: Request, wanted: str, why: str) -> Response:
        """403 for a user whose role lacks a permission; the attempt is an audit entry naming them."""
        user = request.state.user
        log.warning("console: %s (%s) refused %s %s: %s", user["name"], user["role"], request.method, request.url.path, why)
        self.audit(user["name"], "refused", request.url.path, {"role": user["role"], "method": request.method, "wanted": wanted})
        if request.method == "GET":
            return self.render(request, "forbidden.html", status=403, why=why)
        return PlainTextResponse(f"forbidden: {why}", status_code=403)

    async def events(self, request: Request) -> Response:
        """Server-sent events: one ``revision`` event per published revision (its id, revision and status)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(QUEUE_MAX)

        def offer(item: dict) -> None:   # on the event loop
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(item)

        unsubscribe = self.live.subscribe(lambda item: loop.call_soon_threadsafe(offer, item))
        sid = request.session.get("sid")
        return StreamingResponse(_event_stream(queue, unsubscribe, lambda: self.sessions.user(sid) is not None),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _reviewed(form: dict, incident: dict) -> int:
    """The revision the reviewer saw (the form's), one that exists; InvalidAction otherwise."""
    text = form.get("revision", "")
    if not text.isdigit() or not 1 <= int(text) <= int(incident["revision"]):
        raise InvalidAction(f"revision must be one of 1 to {incident['revision']}")
    return int(text)


def _heard(pulses: list[dict]) -> list[dict]:
    """Per sensor that heard the incident: its first arrival, its pulses and how many the location used."""
    by_sensor: dict[str, dict] = {}
    for p in pulses:   # in arrival order
        row = by_sensor.setdefault(p["node"], {"sensor": p["node"], "first_t_ns": p["t_ns"], "pulses": 0, "used": 0})
        row["pulses"] += 1
        row["used"] += bool(p["used"])
    return list(by_sensor.values())


async def _event_stream(queue: asyncio.Queue, unsubscribe, signed_in):
    """The stream, until the browser goes or its session ends (checked at each event and keepalive)."""
    try:
        yield ": connected\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                item = None
            if not await asyncio.to_thread(signed_in):
                return
            if item is None:
                yield ": keepalive\n\n"
                continue
            data = json.dumps({k: item.get(k) for k in ("incident", "revision", "status")})
            yield f"event: revision\ndata: {data}\n\n"
    finally:
        unsubscribe()


def console_app(store, registry, live, secret: bytes, on_action=None, idle_s: float = DEFAULT_IDLE_S,  # noqa: PLR0913
                https: bool = False, areas=None, city=None) -> Starlette:
    """The ASGI application over the fusion ``store``, the node ``registry`` and the service's ``live``
    broadcast; ``https``: cookies only over TLS; ``areas``: the neighbourhoods' GeoJSON polygons of the
    dashboard and the unreported page; ``city``: the city's map layers and basemap
    (fusion.console.citymap.CityMap), if it gave any."""
    console = Console(store, registry, live, on_action, idle_s, areas, city)
    needs = _guard(console)
    routes = [
        Route("/login", console.login_page, name="login", methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", needs(None, console.logout), methods=["POST"]),
        Route("/", needs(roles.LIVE, console.index), name="index"),
        Route("/live", needs(roles.LIVE, console.live_fragment)),
        Route("/events", needs(roles.LIVE, console.events)),
        Route("/incident/{incident}", needs(roles.INCIDENT, console.incident), name="incident"),
        Route("/incident/{incident}/review", needs(roles.INCIDENT, console.review), methods=["POST"]),
        Route("/incident/{incident}/disposition", needs(roles.DISPOSITION, console.review), methods=["POST"]),
        *admin_routes(console, needs),
        *oversight_routes(console, needs),
        *CaseworkPages(console, areas).routes(lambda handler: needs(roles.INCIDENT, handler)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *console.maps.routes(lambda handler: needs(roles.LIVE, handler)),
    ]
    middleware = [Middleware(SecurityHeaders),
                  Middleware(SessionMiddleware, secret_key=secret.hex(), session_cookie="ew_console",
                             max_age=SESSION_MAX_AGE_S, same_site="strict", https_only=https)]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={CsrfRefused: _refused})


def _guard(console: Console):
    """``needs(permission, handler)``: without a good session GETs go to the login page and POSTs
    get 401; a role without ``permission`` (None: any signed-in user) gets 403, audited."""
    def needs(permission: str | None, handler):
        async def guarded(request: Request) -> Response:
            user = await asyncio.to_thread(console.user, request)
            if user is None:
                if request.method == "GET":
                    return RedirectResponse(request.url_for("login"), status_code=SEE_OTHER)
                return PlainTextResponse("not signed in", status_code=401)
            if permission is not None and not roles.may(user["role"], permission):
                return await asyncio.to_thread(console.refuse, request, permission, roles.refusal(user["role"], permission))
            return await handler(request)
        guarded.permission = permission   # type: ignore[attr-defined]  # tests list every route's
        return guarded
    return needs


async def _refused(request: Request, exc: Exception) -> Response:
    # No audit entry: without the token nothing says who sent it (a forged form comes from another site).
    log.warning("console: refused %s %s from %s: %s", request.method, request.url.path,
                request.client.host if request.client else "?", exc)
    return PlainTextResponse(f"refused: {exc}", status_code=403)


class SecurityHeaders:
    """ASGI middleware: the Content-Security-Policy and friends on every response (streams untouched)."""

    HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + self.HEADERS)
            await send(message)

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        return await self.app(scope, receive, send_with_headers)
