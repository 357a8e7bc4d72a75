"""The teacher's live class page, served by the teacher API process (same origin, no other server).

Routes (besides the bearer API of :mod:`privacy.teacher_api`):

- ``GET /`` and ``/static/class.css|class.js`` — the page: plain HTML, CSS and one ES module shipped in the
  package (``privacy/web``); nothing is fetched from anywhere else.
- ``POST /v1/session`` ``{"token": …}`` or ``{"code": …}`` — sign in; sets an HttpOnly, SameSite=Strict
  session cookie (``Secure`` behind https). ``DELETE /v1/session`` signs out; ``GET /v1/session`` → the
  teacher id and their classes (ids only).
- ``GET /v1/page/classes/{class_id}`` and ``…/stream`` (SSE) — the class as the page shows it:
  ``{"class_id", "monitoring": "on", "online", "total", "students": [{"row", "name", "state",
  "sub_app"}]}`` with ``state`` ``online`` | ``offline`` | ``inactive`` (no activity today). The state is
  derived here from the hash's ``online`` and ``ts``; ``ts`` and ``app`` never leave the server.
- ``POST /v1/sign-in-codes`` (bearer token) → a one-time sign-in code for that token.

Every response carries a strict Content-Security-Policy (``script-src 'self'``: no inline script can run even
if markup were injected), ``nosniff``, ``frame-ancestors 'none'`` and ``Cache-Control: no-store``. The access
rules, monitoring hours and audit are the bearer API's (:class:`privacy.teacher_access.TeacherContext`).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from privacy.sessions import COOKIE
from privacy.teacher_access import TeacherContext, read_hashes, row_id, text
from privacy.teacher_api import NO_STORE, OFF, bearer, denied, sse
from privacy.teacher_tokens import Teacher, hash_token

PAGE_FIELDS = ("name", "online", "sub_app", "ts")  # ts only decides "no activity today"; never sent
PAGE_ROW_FIELDS = ("row", "name", "state", "sub_app")
STATIC = {
    "class.css": "text/css",
    "class.js": "text/javascript",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PAGE_PING_S = 5.0  # the page calls itself stale after a few silent pings


def page_view(
    class_id: str,
    members: list[str],
    hashes: list[list[Any]],
    row_key: bytes,
    day_start_ms: int,
) -> dict[str, Any]:
    """The page's class view from ``HMGET name online sub_app ts`` replies (pure).

    ``inactive`` = offline with no event since local midnight (``ts`` 0 or before ``day_start_ms``); a
    member without a hash is inactive. Online students first, then the rest, each by name.
    """
    rows: list[dict[str, Any]] = []
    for student, (name, online, sub_app, ts) in zip(members, hashes, strict=True):
        is_online = text(online) == "1"
        seen = text(ts)
        today = seen.isdigit() and int(seen) > 0 and int(seen) >= day_start_ms
        rows.append(
            {
                "row": row_id(row_key, class_id, student),
                "name": text(name),
                "state": "online" if is_online else "offline" if today else "inactive",
                "sub_app": text(sub_app) if is_online else "",
            }
        )
    rows.sort(key=lambda r: (r["state"] != "online", r["name"].casefold(), r["row"]))
    online = sum(1 for r in rows if r["state"] == "online")
    return {
        "class_id": class_id,
        "monitoring": "on",
        "online": online,
        "total": len(rows),
        "students": rows,
    }


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Strict CSP and friends on every response that does not set its own."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405 …: the same headers on the way out
        for name, value in SECURITY_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _asset(name: str) -> bytes:
    return resources.files("privacy.web").joinpath(name).read_bytes()


def _same_origin(request: web.Request) -> bool:
    """A state-changing request must come from the page itself (besides SameSite=Strict)."""
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


class PageRoutes:
    """The page's handlers around one :class:`TeacherContext`."""

    def __init__(self, ctx: TeacherContext) -> None:
        self.ctx = ctx
        self.index = _asset("index.html")
        self.assets = {name: _asset(name) for name in STATIC}

    # --- who is asking

    def teacher(self, request: web.Request) -> Teacher | None:
        """The signed-in teacher: a live session whose token is still valid."""
        digest = self.ctx.sessions.token_digest(request.cookies.get(COOKIE), self.ctx.now_ms())
        return None if digest is None else self.ctx.book.authenticate_digest(digest)

    # --- static

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.index, content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.assets:
            raise web.HTTPNotFound()
        return web.Response(body=self.assets[name], content_type=STATIC[name], charset="utf-8")

    # --- session

    async def sign_in(self, request: web.Request) -> web.Response:
        if not _same_origin(request) or request.content_type != "application/json":
            return web.json_response({"error": "bad request"}, status=400)
        try:
            form = orjson.loads(await request.read())
            token, code = str(form.get("token") or ""), str(form.get("code") or "")
        except (orjson.JSONDecodeError, AttributeError):
            return web.json_response({"error": "bad request"}, status=400)
        now = self.ctx.now_ms()
        teacher: Teacher | None = None
        digest = self.ctx.sessions.redeem_code(code, now) if code else None
        if digest is not None:
            teacher = self.ctx.book.authenticate_digest(digest)
        elif token and not code:
            teacher, digest = self.ctx.book.authenticate(token), hash_digest(token)
        await self.ctx.record(teacher, "teacher.sign-in", "page", 200 if teacher else 401)
        if teacher is None or digest is None:
            return denied(401)
        session = self.ctx.sessions.create(digest, now)
        response = web.json_response(self.me(teacher), headers=NO_STORE)
        response.set_cookie(
            COOKIE,
            session,
            max_age=self.ctx.settings.teacher_session_ttl_s,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure or None,
        )
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        if not _same_origin(request):
            return web.json_response({"error": "bad request"}, status=400)
        teacher = self.teacher(request)
        self.ctx.sessions.end(request.cookies.get(COOKIE), self.ctx.now_ms())
        await self.ctx.record(teacher, "teacher.sign-out", "page", 200)
        response = web.json_response({"signed_in": False}, headers=NO_STORE)
        response.del_cookie(COOKIE, path="/")
        return response

    async def session(self, request: web.Request) -> web.Response:
        teacher = self.teacher(request)
        if teacher is None:
            return denied(401)
        return web.json_response(self.me(teacher), headers=NO_STORE)

    @staticmethod
    def me(teacher: Teacher) -> dict[str, Any]:
        return {"teacher_id": teacher.teacher_id, "classes": sorted(teacher.classes)}

    async def sign_in_code(self, request: web.Request) -> web.Response:
        token = bearer(request)
        teacher = self.ctx.book.authenticate(token)
        await self.ctx.record(teacher, "teacher.sign-in-code", "page", 200 if teacher else 401)
        if teacher is None or token is None:
            return denied(401)
        code = self.ctx.sessions.issue_code(hash_digest(token), self.ctx.now_ms())
        ttl = self.ctx.settings.teacher_sign_in_code_ttl_s
        return web.json_response({"code": code, "expires_in_s": ttl}, headers=NO_STORE)

    # --- the class

    async def read(self, teacher: Teacher, class_id: str) -> bytes:
        ctx = self.ctx
        members, hashes = await read_hashes(
            ctx.redis, ctx.settings.key_prefix, teacher.district_id, class_id, PAGE_FIELDS
        )
        view = page_view(class_id, members, hashes, ctx.row_key, ctx.day_start_ms(teacher))
        return orjson.dumps(view)

    async def class_view(self, request: web.Request) -> web.Response:
        class_id = request.match_info["class_id"]
        teacher = self.teacher(request)
        status, on = await self.ctx.gate(teacher, "teacher.page", class_id)
        if status != 200:
            return denied(status)
        assert teacher is not None  # noqa: S101 - gate returned 200
        if not on:
            return web.json_response({"class_id": class_id, **OFF}, headers=NO_STORE)
        body = await self.read(teacher, class_id)
        return web.Response(body=body, content_type="application/json", headers=NO_STORE)

    async def class_stream(self, request: web.Request) -> web.StreamResponse:
        class_id = request.match_info["class_id"]
        teacher = self.teacher(request)
        status, _on = await self.ctx.gate(teacher, "teacher.page.stream", class_id)
        if status != 200:
            return denied(status)
        cookie = request.cookies.get(COOKIE)

        def current() -> Teacher | None:
            found = self.teacher(request)
            if found is None:  # revoked or expired: the session is over for good
                self.ctx.sessions.end(cookie, self.ctx.now_ms())
            return found

        async def view(who: Teacher) -> bytes:
            return await self.read(who, class_id)

        return await sse(request, self.ctx, class_id, current, view, ping_s=PAGE_PING_S)


def hash_digest(token: str) -> bytes:
    """The SHA-256 digest of a token, as sessions keep it."""
    return bytes.fromhex(hash_token(token))


def add_page_routes(app: web.Application, ctx: TeacherContext) -> None:
    """The page, its session and its class routes."""
    routes = PageRoutes(ctx)
    app.router.add_get("/", routes.page)
    app.router.add_get("/static/{name}", routes.static)
    app.router.add_post("/v1/session", routes.sign_in)
    app.router.add_delete("/v1/session", routes.sign_out)
    app.router.add_get("/v1/session", routes.session)
    app.router.add_post("/v1/sign-in-codes", routes.sign_in_code)
    app.router.add_get("/v1/page/classes/{class_id}", routes.class_view)
    app.router.add_get("/v1/page/classes/{class_id}/stream", routes.class_stream)


def page_invitation(host: str, port: int, token: str, class_id: str) -> str:
    """One line for a launcher to print: the class page's URL and a fresh one-time sign-in code.

    The URL carries no secret (a URL ends up in history, logs and referrers); the code works once, for
    ``TEACHER_SIGN_IN_CODE_TTL_S``, and only on this server.
    """
    base = f"http://{host}:{port}"
    request = urllib.request.Request(  # noqa: S310 - the local teacher API, http by construction
        f"{base}/v1/sign-in-codes", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            answer = orjson.loads(response.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        return f"teacher page: {base}/ (no sign-in code: {type(exc).__name__})"
    minutes = int(answer["expires_in_s"]) // 60
    return (
        f"teacher page: {base}/#/class/{class_id} — sign in with the one-time code "
        f"{answer['code']} (works once, for {minutes} min)"
    )
