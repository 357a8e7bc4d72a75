"""``csync analyst-api``: the analysts' read API and dashboard over ``usage.app_daily_public``.

Its own process (not part of the ClickHouse sink) because it faces people: it holds analyst sessions, a
catalog and an audit writer, and it must be restartable, scalable and exposable behind a proxy without
touching the process that writes the usage data. With chDB it reads through the sink's read endpoint.

- ``GET /v1/usage/daily|top|trend``, ``GET /v1/reports/{categories,licenses,unapproved,unused}``,
  ``GET /v1/dashboard`` (``.csv``): ``from``, ``to`` (inclusive ISO days), ``app``, ``category``,
  ``format=json|csv``; ``top`` takes ``kind=apps|sites`` and ``n``; ``trend`` ``bucket=day|week|month``.
  See ``schemas/openapi/analyst.v1.json``.
- Authentication: ``Authorization: Bearer <analyst token>``, or the dashboard's session cookie. Every query
  is audited (analyst, endpoint, range, filters, row count; no usage data).
- ``GET /`` the dashboard; ``GET/POST /login``, ``POST /logout``; ``/static/`` the package's CSS and module.
  Every response carries a strict Content-Security-Policy and ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from analyst import reports
from analyst.catalog import Catalog
from analyst.dashboard import TABLES, dashboard_csv, dashboard_data, school_year_start, to_csv
from analyst.render import asset, page
from analyst.reports import Cell, Query
from analyst.signin import normalise, redeem
from analyst.source import Reader, SourceUnavailable, read
from analyst.tokens import AnalystBook, Sessions, TokenFileError, hash_token
from csync.sign_in_throttle import SignInThrottle, throttle_middleware
from privacy.audit import AuditLog

COOKIE = "csync_analyst"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
DAILY_COLUMNS = ("day", "app", "sub_app", "name", "category", "active_seconds", "students")
SUMMARY_COLUMNS = ("active_seconds", "student_days", "peak_daily_students",
                   "median_daily_students", "days")  # fmt: skip
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Service:
    """What the handlers share: the view reader, K, the catalog, tokens, sessions, audit, the clock."""

    reader: Reader
    k: int
    catalog: Catalog
    book: AnalystBook
    sessions: Sessions
    audit: AuditLog
    codes: Path | None = None
    """The one-time sign-in code file (:mod:`analyst.signin`), if sign-in codes are accepted."""
    today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date()
    throttle: SignInThrottle = field(default_factory=lambda: SignInThrottle(20, 60.0))
    """Failed sign-ins per address (:mod:`csync.sign_in_throttle`)."""


SERVICE = web.AppKey("service", Service)


def parse_query(params: Any, today: dt.date | None = None) -> Query:
    """``from``/``to``/``app``/``category`` of a request (the last 30 days when ``today`` is given and
    the range is not); ValueError with a message for the client."""
    try:
        if today is not None and "from" not in params and "to" not in params:
            return Query(today - dt.timedelta(days=29), today)
        return Query(dt.date.fromisoformat(str(params["from"])),
                     dt.date.fromisoformat(str(params["to"])),
                     params.get("app") or None, params.get("category") or None)  # fmt: skip
    except KeyError as exc:
        raise ValueError(f"missing parameter {exc.args[0]!r}") from None


def _who(request: web.Request) -> str | None:
    service = request.app[SERVICE]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return service.book.authenticate(header[7:].strip())
    session = service.sessions.lookup(request.cookies.get(COOKIE))
    if session is None or not service.book.still_valid(session[1]):
        return None
    return session[0]


async def _cells(request: web.Request, query: Query) -> list[Cell]:
    service = request.app[SERVICE]
    rows = await read(service.reader, query.day_from, query.day_to)
    return reports.select(reports.published(rows, service.k), query, service.catalog)


def _audit(request: web.Request, who: str, query: Query, rows: int, fmt: str) -> None:
    target = f"{request.path} {query.day_from}..{query.day_to}"
    for name, value in (("app", query.app), ("category", query.category)):
        if value:
            target += f" {name}={value[:40]}"
    request.app[SERVICE].audit.append(f"analyst:{who}", "analyst.query", target,
                                      detail={"rows": rows, "format": fmt})  # fmt: skip


def api_endpoint(compute: Callable[[web.Request, list[Cell], Query], tuple[Any, list[dict[str, Any]],
                                                                           tuple[str, ...]]]) -> Handler:  # fmt: skip
    """A read endpoint: authenticate, parse, read, compute, audit, answer in JSON or CSV."""

    async def handler(request: web.Request) -> web.StreamResponse:
        who = _who(request)
        if who is None:
            return web.json_response({"error": "a valid analyst token is required"}, status=401)
        fmt = request.query.get("format", "json")
        try:
            if fmt not in ("json", "csv"):
                raise ValueError("format must be json or csv")
            query = parse_query(request.query)
            cells = await _cells(request, query)
            body, rows, columns = compute(request, cells, query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except SourceUnavailable as exc:
            return web.json_response({"error": str(exc)}, status=503)
        _audit(request, who, query, len(rows), fmt)
        if fmt == "csv":
            text = to_csv(rows, columns) if columns else dashboard_csv(body)
            return web.Response(text=text, content_type="text/csv",
                                headers={"Content-Disposition": "attachment"})  # fmt: skip
        return web.json_response({"k": request.app[SERVICE].k, "from": str(query.day_from),
                                  "to": str(query.day_to), **body})  # fmt: skip

    return handler


def _daily(request: web.Request, cells: list[Cell], query: Query) -> Any:
    catalog = request.app[SERVICE].catalog
    rows = [
        {**c._asdict(), "day": c.day.isoformat(), "name": catalog.entry_for(c.app, c.sub_app).name,
         "category": catalog.entry_for(c.app, c.sub_app).category}
        for c in sorted(cells)
    ]  # fmt: skip
    return {"rows": rows, "total": reports.summarise(cells)._asdict()}, rows, DAILY_COLUMNS


def _top(request: web.Request, cells: list[Cell], query: Query) -> Any:
    kind = request.query.get("kind", "apps")
    if kind not in ("apps", "sites"):
        raise ValueError("kind must be apps or sites")
    n = int(request.query.get("n", "10")) if request.query.get("n", "10").isdigit() else -1
    if not 1 <= n <= 1000:
        raise ValueError("n must be a whole number from 1 to 1000")
    body = reports.top(cells, kind, n, request.app[SERVICE].catalog)  # type: ignore[arg-type]
    return body, body["rows"], ("name", "category", *SUMMARY_COLUMNS)


def _trend(request: web.Request, cells: list[Cell], query: Query) -> Any:
    bucket = request.query.get("bucket", "day")
    if bucket not in reports.BUCKETS:
        raise ValueError("bucket must be day, week or month")
    rows = reports.trend(cells, bucket)
    return {"bucket": bucket, "rows": rows}, rows, ("bucket", *SUMMARY_COLUMNS)


def _report(request: web.Request, cells: list[Cell], query: Query) -> Any:
    name = request.match_info["name"]
    data = dashboard_data(cells, query, request.app[SERVICE].catalog, request.app[SERVICE].k)
    columns = {key: cols for key, _id, cols in TABLES}
    if name not in ("categories", "licenses", "unapproved", "unused"):
        raise ValueError("report must be categories, licenses, unapproved or unused")
    return {"rows": data[name]}, data[name], columns[name]


def _dashboard(request: web.Request, cells: list[Cell], query: Query) -> Any:
    data = dashboard_data(cells, query, request.app[SERVICE].catalog, request.app[SERVICE].k)
    rows = [
        r
        for key, _id, _c in TABLES
        for r in (data[key]["rows"] if key.startswith("top") else data[key])
    ]
    return data, rows, ()


async def dashboard_csv_handler(request: web.Request) -> web.StreamResponse:
    """Everything the dashboard shows for the range, as CSV (the page's download link)."""
    who = _who(request)
    if who is None:
        return web.json_response({"error": "a valid analyst token is required"}, status=401)
    try:
        query = parse_query(request.query)
        cells = await _cells(request, query)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except SourceUnavailable as exc:
        return web.json_response({"error": str(exc)}, status=503)
    service = request.app[SERVICE]
    data = dashboard_data(cells, query, service.catalog, service.k)
    _audit(request, who, query, len(cells), "csv")
    filename = f"usage-{query.day_from}-{query.day_to}.csv"
    return web.Response(text=dashboard_csv(data), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


async def dashboard_page(request: web.Request) -> web.StreamResponse:
    """The dashboard (server-rendered for the chosen range); the sign-in page without a session."""
    who = _who(request)
    if who is None:
        raise web.HTTPSeeOther("/login")
    service = request.app[SERVICE]
    today = service.today()
    try:
        query = parse_query(request.query, today)
        cells = await _cells(request, query)
    except ValueError as exc:
        return web.Response(text=f"<p>Bad range: {html.escape(str(exc))}</p>", status=400,
                            content_type="text/html")  # fmt: skip
    except SourceUnavailable as exc:
        return web.Response(
            text=f"<p>{html.escape(str(exc))}</p>", status=503, content_type="text/html"
        )
    data = dashboard_data(cells, query, service.catalog, service.k)
    _audit(request, who, query, len(cells), "html")
    live = {"today": today.isoformat(), "sytd": school_year_start(today).isoformat(),
            "categories": [*service.catalog.categories(), "uncatalogued"], "analyst": who}  # fmt: skip
    return web.Response(text=page(data, live=live), content_type="text/html")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def login_form(request: web.Request) -> web.StreamResponse:
    return web.Response(text=asset("login.html"), content_type="text/html")


async def login(request: web.Request) -> web.StreamResponse:
    """Swap a posted analyst token for a session cookie (the token never appears in a URL)."""
    if not _same_origin(request):
        return web.Response(text="cross-site sign-in refused", status=403)
    form = await request.post()
    service = request.app[SERVICE]
    secret = str(form.get("token", "")).strip()
    who, digest = service.book.authenticate(secret), hash_token(secret)
    if who is None and service.codes is not None and len(normalise(secret)) == 12:
        redeemed = redeem(service.codes, secret)  # a one-time sign-in code instead of a token
        if redeemed is not None and service.book.still_valid(redeemed[1]):
            who, digest = redeemed
    if who is None:
        text = asset("login.html").replace(
            "<!--MESSAGE-->", '<p role="alert">That token is not valid.</p>'
        )
        return web.Response(text=text, status=401, content_type="text/html")
    service.audit.append(f"analyst:{who}", "analyst.login", "dashboard")
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(COOKIE, service.sessions.start(who, digest), httponly=True, samesite="Strict",
                        path="/", max_age=int(service.sessions.ttl_s),
                        secure=request.scheme == "https")  # fmt: skip
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    if not _same_origin(request):
        return web.Response(text="cross-site sign-out refused", status=403)
    request.app[SERVICE].sessions.end(request.cookies.get(COOKIE))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(text=asset(name), content_type=STATIC[name])


async def no_icon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.StreamResponse:
    """Liveness: the process answers (reads nothing)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Readiness: the analysts' token file can be used (the catalog was checked at start)."""
    try:
        request.app[SERVICE].book.authenticate(None)  # re-reads the file when it changed
    except TokenFileError:
        return web.json_response({"status": "token file unusable"}, status=503)
    return web.json_response({"status": "ready"})


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on the sign-in POST, and
    # the Origin check is what stops another site from signing a browser in (login CSRF).
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Strict CSP and friends on every response, errors and redirects included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc)
        raise
    _secure(request, response)
    return response


def analyst_app(service: Service) -> web.Application:
    """The aiohttp application of the analyst service."""
    throttle = throttle_middleware(service.throttle, frozenset({"/login"}))
    app = web.Application(middlewares=[security_headers, throttle])
    app[SERVICE] = service
    app.router.add_get("/v1/usage/daily", api_endpoint(_daily))
    app.router.add_get("/v1/usage/top", api_endpoint(_top))
    app.router.add_get("/v1/usage/trend", api_endpoint(_trend))
    app.router.add_get("/v1/reports/{name}", api_endpoint(_report))
    app.router.add_get("/v1/dashboard", api_endpoint(_dashboard))
    app.router.add_get("/v1/dashboard.csv", dashboard_csv_handler)
    app.router.add_get("/", dashboard_page)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/favicon.ico", no_icon)
    return app
