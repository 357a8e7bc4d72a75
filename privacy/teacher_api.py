"""``csync teacher-api``: the teacher's presence view of their own classes, and nothing more.

Privacy policy: "teachers will only be able to access student information regarding to the student's name,
whether they are on the ClassroomSync app, and which sub-app they are currently in" (CONTRACT §4).

- ``GET /v1/classes/{class_id}/presence`` → ``{"class_id", "students": [{"row", "name", "online",
  "sub_app"}]}``, sorted by name. ``row`` is an opaque id, stable per (class, student) while the server runs
  (HMAC under a per-process key), so a UI can track rows without ever receiving a student id. ``app`` and
  ``ts`` are never read from Redis (HMGET of the three whitelisted fields only), so they cannot leak.
- ``GET /v1/classes/{class_id}/presence/stream`` → Server-Sent Events: an ``event: presence`` with the same
  body whenever the view changes, a comment line as keep-alive. Implemented by polling Redis every
  ``TEACHER_STREAM_POLL_S``: keyspace notifications would need ``notify-keyspace-events`` server-wide (a config
  the Redis sink does not control, and CPU for every write of every district) and are lost on reconnect; a
  poll of one class is one SMEMBERS plus one pipeline. The token is re-checked on every poll, so revoking it
  ends the stream.

Access rules: a missing, malformed or unknown bearer token → 401. A class the token's teacher does not teach →
403, with the same body whether the class exists in another district, in no district, or is not even a valid
id: the server only ever looks in the teacher's own district, so nothing about other districts can be
learned. Every request (allowed or not) is appended to the audit log: teacher id, class, status — never
student data. Responses carry ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis

from csync.redis_client import redis_client
from csync.settings import Settings
from privacy.audit import AuditLog
from privacy.teacher_tokens import Teacher, TokenBook
from schemas.roster import is_valid_id

VIEW_FIELDS = ("name", "online", "sub_app")  # the only fields read from a presence hash
ROW_FIELDS = ("row", "name", "online", "sub_app")  # the only fields a teacher receives
KEEPALIVE_S = 15.0
NO_STORE = {"Cache-Control": "no-store"}


def row_id(key: bytes, class_id: str, student_id: str) -> str:
    """An opaque row id for a student in a class: unlinkable across classes and server restarts."""
    return hmac.new(key, f"{class_id}\x00{student_id}".encode(), hashlib.sha256).hexdigest()[:16]


def class_view(
    class_id: str, members: list[str], hashes: list[list[Any]], row_key: bytes
) -> list[dict[str, Any]]:
    """The teacher's rows from the class members and their ``HMGET name online sub_app`` replies (pure).

    A member without a presence hash (expired, or not written yet) is shown offline with an empty name;
    ``sub_app`` is shown only while online.
    """
    rows: list[dict[str, Any]] = []
    for student, (name, online, sub_app) in zip(members, hashes, strict=True):
        is_online = _text(online) == "1"
        rows.append(
            {
                "row": row_id(row_key, class_id, student),
                "name": _text(name),
                "online": is_online,
                "sub_app": _text(sub_app) if is_online else "",
            }
        )
    rows.sort(key=lambda r: (r["name"].casefold(), r["row"]))
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decide(teacher: Teacher | None, class_id: str) -> int:
    """The access rule (pure): 401 without a teacher, 403 unless they teach the class, else 200."""
    if teacher is None:
        return 401
    if not is_valid_id(class_id) or class_id not in teacher.classes:
        return 403
    return 200


async def read_class(
    redis: Redis, prefix: str, district_id: str, class_id: str, row_key: bytes
) -> list[dict[str, Any]]:
    """The class view from Redis: SMEMBERS of the class set, then one pipeline of HMGETs."""
    members = sorted(
        _text(m) for m in await redis.smembers(f"{prefix}:class:{district_id}:{class_id}")
    )
    if not members:
        return []
    pipe = redis.pipeline(transaction=False)
    for student in members:
        pipe.hmget(f"{prefix}:presence:{district_id}:{student}", list(VIEW_FIELDS))
    hashes = await pipe.execute()
    return class_view(class_id, members, hashes, row_key)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


DENIED = {
    401: ({"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="classroomsync"'}),
    403: ({"error": "forbidden"}, {}),
}


def teacher_app(
    settings: Settings,
    redis: Redis,
    book: TokenBook,
    audit: AuditLog,
    *,
    row_key: bytes | None = None,
) -> web.Application:
    """The aiohttp application (routes, auth, audit); the caller owns ``redis``."""
    key = row_key or secrets.token_bytes(32)
    prefix = settings.key_prefix
    poll_s = settings.teacher_stream_poll_s

    async def record(teacher: Teacher | None, action: str, class_id: str, status: int) -> None:
        who = f"teacher:{teacher.teacher_id}" if teacher else "anonymous"
        target = f"class:{class_id}" if is_valid_id(class_id) else "class:(invalid id)"
        # fsync'd append off the event loop: the request is audited before it is answered.
        await asyncio.to_thread(audit.append, who, action, target, status=str(status))

    async def gate(
        request: web.Request, action: str
    ) -> tuple[Teacher | None, str, web.Response | None]:
        class_id = request.match_info["class_id"]
        teacher = book.authenticate(_bearer(request))
        status = decide(teacher, class_id)
        await record(teacher, action, class_id, status)
        if status != 200:
            body, headers = DENIED[status]
            return (
                teacher,
                class_id,
                web.json_response(body, status=status, headers={**NO_STORE, **headers}),
            )
        return teacher, class_id, None

    async def presence(request: web.Request) -> web.Response:
        teacher, class_id, denied = await gate(request, "teacher.presence")
        if denied is not None:
            return denied
        assert teacher is not None  # noqa: S101 - gate returned 200
        rows = await read_class(redis, prefix, teacher.district_id, class_id, key)
        return web.json_response({"class_id": class_id, "students": rows}, headers=NO_STORE)

    async def stream(request: web.Request) -> web.StreamResponse:
        teacher, class_id, denied = await gate(request, "teacher.presence.stream")
        if denied is not None:
            return denied
        assert teacher is not None  # noqa: S101
        response = web.StreamResponse(
            headers={**NO_STORE, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        last: bytes | None = None
        idle = 0.0
        try:
            while True:
                if decide(book.authenticate(_bearer(request)), class_id) != 200:
                    await response.write(b"event: revoked\ndata: {}\n\n")
                    break
                rows = await read_class(redis, prefix, teacher.district_id, class_id, key)
                body = orjson.dumps({"class_id": class_id, "students": rows})
                if body != last:
                    await response.write(b"event: presence\ndata: " + body + b"\n\n")
                    last, idle = body, 0.0
                elif idle >= KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    idle = 0.0
                await asyncio.sleep(poll_s)
                idle += poll_s
        except ConnectionResetError:
            pass  # the teacher closed the page
        return response

    @web.middleware
    async def no_store(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    app = web.Application(middlewares=[no_store])
    app.router.add_get("/v1/classes/{class_id}/presence", presence)
    app.router.add_get("/v1/classes/{class_id}/presence/stream", stream)
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
