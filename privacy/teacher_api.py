"""``csync teacher-api``: the teacher's presence view of their own classes, and nothing more.

Privacy policy: "teachers will only be able to access student information regarding to the student's name,
whether they are on the ClassroomSync app, and which sub-app they are currently in" (CONTRACT §4).

- ``GET /v1/classes/{class_id}/presence`` → ``{"class_id", "students": [{"row", "name", "online",
  "sub_app"}]}``, sorted by name. ``row`` is an opaque id, stable per (class, student) while the server runs
  (HMAC under a per-process key), so a UI can track rows without ever receiving a student id. ``app`` and
  ``ts`` are never read from Redis (HMGET of the three whitelisted fields only), so they cannot leak.
- ``GET /v1/classes/{class_id}/presence/stream`` → Server-Sent Events: an ``event: presence`` with the same
  body whenever the view changes, ``event: ping`` after 15 s of silence. Implemented by polling Redis every
  ``TEACHER_STREAM_POLL_S``: keyspace notifications would need ``notify-keyspace-events`` server-wide (a config
  the Redis sink does not control, and CPU for every write of every district) and are lost on reconnect; a
  poll of one class is one SMEMBERS plus one pipeline. The token is re-checked on every poll, so revoking it
  ends the stream.

Monitoring hours (:mod:`privacy.monitoring_hours`): outside them an allowed request gets
``{"class_id", "monitoring": "off"}`` (the stream: ``event: monitoring``) and nothing is read from Redis;
inside them bodies carry ``"monitoring": "on"``.

The teacher's web page (:mod:`privacy.teacher_web`) is served by the same application, same origin.

Access rules: a missing, malformed or unknown bearer token → 401. A class the token's teacher does not teach →
403, with the same body whether the class exists in another district, in no district, or is not even a valid
id: the server only ever looks in the teacher's own district, so nothing about other districts can be
learned. Every request (allowed or not) is appended to the audit log: teacher id, class, status — never
student data. Responses carry ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from csync.redis_client import AnyRedis, redis_client
from csync.settings import Settings
from csync.sign_in_throttle import SignInThrottle, throttle_middleware
from privacy.audit import AuditLog
from privacy.monitoring_hours import LiveHours, MonitoringHours
from privacy.sessions import SessionStore
from privacy.teacher_access import TeacherContext, decide, read_hashes, row_id, text, utc_now
from privacy.teacher_tokens import Teacher, TokenBook, TokenFileError

VIEW_FIELDS = ("name", "online", "sub_app")  # the only fields read from a presence hash
ROW_FIELDS = ("row", "name", "online", "sub_app")  # the only fields a teacher receives
KEEPALIVE_S = 15.0
NO_STORE = {"Cache-Control": "no-store"}
OFF = {"monitoring": "off"}

__all__ = ["ROW_FIELDS", "class_view", "decide", "read_class", "serve", "teacher_app"]


def class_view(
    class_id: str, members: list[str], hashes: list[list[Any]], row_key: bytes
) -> list[dict[str, Any]]:
    """The teacher's rows from the class members and their ``HMGET name online sub_app`` replies (pure).

    A member without a presence hash (expired, or not written yet) is shown offline with an empty name;
    ``sub_app`` is shown only while online.
    """
    rows: list[dict[str, Any]] = []
    for student, (name, online, sub_app) in zip(members, hashes, strict=True):
        is_online = text(online) == "1"
        rows.append(
            {
                "row": row_id(row_key, class_id, student),
                "name": text(name),
                "online": is_online,
                "sub_app": text(sub_app) if is_online else "",
            }
        )
    rows.sort(key=lambda r: (r["name"].casefold(), r["row"]))
    return rows


async def read_class(
    redis: AnyRedis, prefix: str, district_id: str, class_id: str, row_key: bytes
) -> list[dict[str, Any]]:
    """The class view from Redis (``name``, ``online``, ``sub_app`` of each member)."""
    members, hashes = await read_hashes(redis, prefix, district_id, class_id, VIEW_FIELDS)
    return class_view(class_id, members, hashes, row_key)


def bearer(request: web.Request) -> str | None:
    """The bearer token of a request, or ``None``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


DENIED = {
    401: ({"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="classroomsync"'}),
    403: ({"error": "forbidden"}, {}),
}


def denied(status: int) -> web.Response:
    body, headers = DENIED[status]
    return web.json_response(body, status=status, headers={**NO_STORE, **headers})


def add_api_routes(app: web.Application, ctx: TeacherContext) -> None:
    """The bearer-token JSON and SSE routes."""
    prefix = ctx.settings.key_prefix

    async def presence(request: web.Request) -> web.Response:
        class_id = request.match_info["class_id"]
        teacher = ctx.book.authenticate(bearer(request))
        status, on = await ctx.gate(teacher, "teacher.presence", class_id)
        if status != 200:
            return denied(status)
        assert teacher is not None  # noqa: S101 - gate returned 200
        if not on:
            return web.json_response({"class_id": class_id, **OFF}, headers=NO_STORE)
        rows = await read_class(ctx.redis, prefix, teacher.district_id, class_id, ctx.row_key)
        body = {"class_id": class_id, "monitoring": "on", "students": rows}
        return web.json_response(body, headers=NO_STORE)

    async def stream(request: web.Request) -> web.StreamResponse:
        class_id = request.match_info["class_id"]
        teacher = ctx.book.authenticate(bearer(request))
        status, _on = await ctx.gate(teacher, "teacher.presence.stream", class_id)
        if status != 200:
            return denied(status)
        assert teacher is not None  # noqa: S101

        def current() -> Teacher | None:
            return ctx.book.authenticate(bearer(request))

        async def view(who: Teacher) -> bytes:
            rows = await read_class(ctx.redis, prefix, who.district_id, class_id, ctx.row_key)
            return orjson.dumps({"class_id": class_id, "monitoring": "on", "students": rows})

        return await sse(request, ctx, class_id, current, view)

    app.router.add_get("/v1/classes/{class_id}/presence", presence)
    app.router.add_get("/v1/classes/{class_id}/presence/stream", stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", functools.partial(readyz, ctx.book))


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers (reads nothing)."""
    return web.json_response({"status": "ok"})


async def readyz(book: TokenBook, _request: web.Request) -> web.Response:
    """Readiness: the token file can be used (reads no student data, so it answers at any hour)."""
    try:
        book.authenticate(None)  # re-reads the file when it changed
    except TokenFileError:
        return web.json_response({"status": "token file unusable"}, status=503)
    return web.json_response({"status": "ready"})


async def sse(
    request: web.Request,
    ctx: TeacherContext,
    class_id: str,
    current: Callable[[], Teacher | None],
    view: Callable[[Teacher], Awaitable[bytes]],
    ping_s: float = KEEPALIVE_S,
) -> web.StreamResponse:
    """Server-Sent Events of a class: ``presence`` when the view changes, ``monitoring`` when monitoring
    goes off (then Redis is not read until it is on again), ``revoked`` when access ends, ``ping`` every
    ``ping_s`` of silence. Access is re-checked before every read."""
    response = web.StreamResponse(
        headers={**NO_STORE, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 1000\n\n")  # reconnect after one second, not the default three
    last: bytes | None = None
    idle = 0.0
    poll_s = ctx.settings.teacher_stream_poll_s
    try:
        while True:
            teacher = current()
            if decide(teacher, class_id) != 200:
                await response.write(b"event: revoked\ndata: {}\n\n")
                break
            assert teacher is not None  # noqa: S101 - decide returned 200
            on = ctx.monitoring_on(teacher, class_id)
            body = await view(teacher) if on else orjson.dumps({"class_id": class_id, **OFF})
            if body != last:
                kind = b"presence" if on else b"monitoring"
                await response.write(b"event: " + kind + b"\ndata: " + body + b"\n\n")
                last, idle = body, 0.0
            elif idle >= ping_s:
                await response.write(b"event: ping\ndata: {}\n\n")
                idle = 0.0
            await asyncio.sleep(poll_s)
            idle += poll_s
    except ConnectionResetError:
        pass  # the teacher closed the page
    return response


def teacher_app(
    settings: Settings,
    redis: AnyRedis,
    book: TokenBook,
    audit: AuditLog,
    *,
    row_key: bytes | None = None,
    hours: MonitoringHours | None = None,
    sessions: SessionStore | None = None,
) -> web.Application:
    """The aiohttp application (bearer API and the teacher page); the caller owns ``redis``."""
    # Imported here: the page's routes build on this module's SSE loop and denial answers.
    from privacy.teacher_web import add_page_routes, security_headers

    ctx = TeacherContext(
        settings=settings,
        redis=redis,
        book=book,
        audit=audit,
        hours=hours or LiveHours(settings),
        sessions=sessions or SessionStore.from_settings(settings),
        row_key=row_key or secrets.token_bytes(32),
        clock=utc_now,
    )
    throttle = throttle_middleware(
        SignInThrottle.from_settings(settings), frozenset({"/v1/session"})
    )
    app = web.Application(middlewares=[security_headers, throttle])
    add_api_routes(app, ctx)
    add_page_routes(app, ctx)
    return app


async def serve(settings: Settings, book: TokenBook, audit: AuditLog) -> None:
    """Run the teacher API until cancelled."""
    redis = redis_client(settings)
    runner = web.AppRunner(teacher_app(settings, redis, book, audit))
    await runner.setup()
    site = web.TCPSite(runner, settings.teacher_api_host, settings.teacher_api_port)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await redis.aclose()
