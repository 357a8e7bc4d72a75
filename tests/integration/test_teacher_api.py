"""The teacher presence API against a real redis-server: every access rule, the field whitelist, SSE, audit."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from csync.redis_client import redis_client
from csync.settings import Settings
from privacy.audit import AuditLog
from privacy.sessions import COOKIE
from privacy.teacher_api import ROW_FIELDS, teacher_app
from privacy.teacher_tokens import TokenBook, issue_token, revoke_teacher

pytestmark = pytest.mark.redis

# d1: class c-1 {s1 Ada online in "fractions" of app "math", s2 Bob offline}, class c-2 {s3}
# d2 (another district): class c-1 {s9 Eve} and class c-9 {s9}
HASHES = {
    ("d1", "s1"): {
        "name": "Ada",
        "online": "1",
        "app": "math",
        "sub_app": "fractions",
        "ts": "1000",
    },
    ("d1", "s2"): {"name": "Bob", "online": "0", "app": "", "sub_app": "", "ts": "999"},
    ("d1", "s3"): {"name": "Cy", "online": "1", "app": "web", "sub_app": "a.org", "ts": "1000"},
    ("d2", "s9"): {"name": "Eve", "online": "1", "app": "web", "sub_app": "b.org", "ts": "1000"},
}
CLASSES = {("d1", "c-1"): ["s1", "s2"], ("d1", "c-2"): ["s3"], ("d2", "c-1"): ["s9"],
           ("d2", "c-9"): ["s9"]}  # fmt: skip


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    redis: Redis
    settings: Settings
    audit: AuditLog
    tokens: Path
    token: str  # teacher t1 of d1, teaches c-1 only

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest.fixture
async def api(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(
        teacher_stream_poll_s=0.05, monitoring_days="mon-sun", monitoring_hours="00:00-24:00"
    )
    redis = redis_client(settings)
    p = settings.key_prefix
    for (district, student), fields in HASHES.items():
        for field, value in fields.items():
            await redis.hset(f"{p}:presence:{district}:{student}", field, value)
    for (district, cls), members in CLASSES.items():
        await redis.sadd(f"{p}:class:{district}:{cls}", *members)
    tokens = tmp_path / "tokens.json"
    token = issue_token(tokens, "t1", "d1", ["c-1"])
    audit = AuditLog(tmp_path / "audit.log")
    app = teacher_app(settings, redis, TokenBook(tokens), audit)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client, redis, settings, audit, tokens, token)
    finally:
        await client.close()
        await redis.aclose()


async def test_teacher_sees_only_name_online_and_sub_app_of_their_class(api: Api) -> None:
    resp = await api.client.get("/v1/classes/c-1/presence", headers=api.auth())
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    text = await resp.text()
    body = orjson.loads(text)
    assert set(body) == {"class_id", "monitoring", "students"} and body["monitoring"] == "on"
    students = body["students"]
    assert [(s["name"], s["online"], s["sub_app"]) for s in students] == [
        ("Ada", True, "fractions"),
        ("Bob", False, ""),
    ]
    assert all(tuple(s) == ROW_FIELDS for s in students)
    # Row ids are random hex: check everything else of the body for data a teacher must not get.
    rest = orjson.dumps({**body, "students": [{**s, "row": ""} for s in students]}).decode()
    for forbidden in ('"app"', '"ts"', "math", "1000", "999", "s1", "s2", "d1", "Cy", "Eve"):
        assert forbidden not in rest, forbidden
    assert all(len(s["row"]) == 16 for s in students)
    again = orjson.loads(
        await (await api.client.get("/v1/classes/c-1/presence", headers=api.auth())).text()
    )
    assert [s["row"] for s in again["students"]] == [s["row"] for s in students]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dDE6eA=="},
        {"Authorization": "Bearer nope"},
    ],
)
async def test_missing_or_bad_token_is_401(api: Api, headers: dict[str, str]) -> None:
    for path in ("/v1/classes/c-1/presence", "/v1/classes/c-1/presence/stream"):
        resp = await api.client.get(path, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Ada" not in await resp.text()


async def test_other_classes_are_403_and_never_reveal_other_districts(api: Api) -> None:
    answers = []
    # c-2: exists in the teacher's district; c-9: exists only in d2; c-404: nowhere; bad id.
    for cls in ("c-2", "c-9", "c-404", "c%2A"):
        resp = await api.client.get(f"/v1/classes/{cls}/presence", headers=api.auth())
        answers.append((resp.status, await resp.read(), resp.headers.get("Content-Type")))
    assert {a[0] for a in answers} == {403}
    assert len({(a[1], a[2]) for a in answers}) == 1  # byte-identical answers
    # c-1 also exists in d2: the teacher of d1's c-1 never sees d2's students.
    text = await (await api.client.get("/v1/classes/c-1/presence", headers=api.auth())).text()
    assert "Eve" not in text


async def test_a_teacher_of_another_district_cannot_read_this_one(api: Api) -> None:
    other = issue_token(api.tokens, "t9", "d2", ["c-1"])
    body = orjson.loads(
        await (await api.client.get("/v1/classes/c-1/presence", headers=api.auth(other))).text()
    )
    assert [s["name"] for s in body["students"]] == ["Eve"]


async def test_stream_pushes_the_view_when_it_changes_and_stops_on_revocation(api: Api) -> None:
    resp = await api.client.get("/v1/classes/c-1/presence/stream", headers=api.auth())
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")

    async def next_event() -> tuple[str, bytes]:
        event, data = "", b""
        while True:
            line = (await asyncio.wait_for(resp.content.readline(), 5)).rstrip(b"\n")
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
            elif not line and event:
                return event, data

    event, data = await next_event()
    assert event == "presence"
    assert [s["online"] for s in orjson.loads(data)["students"]] == [True, False]
    p = api.settings.key_prefix
    await api.redis.hset(
        f"{p}:presence:d1:s2", mapping={"online": "1", "app": "read", "sub_app": "ch-3"}
    )
    event, data = await next_event()
    students = orjson.loads(data)["students"]
    assert [(s["name"], s["online"], s["sub_app"]) for s in students] == [
        ("Ada", True, "fractions"),
        ("Bob", True, "ch-3"),
    ]
    assert b"read" not in data  # the app is never sent
    revoke_teacher(api.tokens, "t1")
    event, _ = await next_event()
    assert event == "revoked"
    resp.close()


async def test_every_access_is_audited_without_student_data(api: Api) -> None:
    await api.client.get("/v1/classes/c-1/presence", headers=api.auth())
    await api.client.get("/v1/classes/c-9/presence", headers=api.auth())
    await api.client.get("/v1/classes/c-1/presence")
    entries = api.audit.tail(10)
    assert [(e["who"], e["action"], e["target"], e["status"]) for e in entries] == [
        ("teacher:t1", "teacher.presence", "class:c-1", "200"),
        ("teacher:t1", "teacher.presence", "class:c-9", "403"),
        ("anonymous", "teacher.presence", "class:c-1", "401"),
    ]
    log = (api.audit.path).read_text()
    for student_data in ("Ada", "Bob", "fractions", "s1", api.token):
        assert student_data not in log


async def test_page_sign_in_sets_a_strict_http_only_cookie_and_refuses_other_origins(
    api: Api,
) -> None:
    good = {"token": api.token}
    refused = [
        await api.client.post("/v1/session", json=good, headers={"Origin": "http://evil.test"}),
        await api.client.post("/v1/session", data=orjson.dumps(good)),  # not application/json
        await api.client.post("/v1/session", json={"token": "nope"}),
        await api.client.post("/v1/session", json={"code": "nope"}),
    ]
    assert [r.status for r in refused] == [400, 400, 401, 401]
    assert all("Set-Cookie" not in r.headers for r in refused)
    resp = await api.client.post("/v1/session", json=good)
    assert resp.status == 200
    assert await resp.json() == {"teacher_id": "t1", "classes": ["c-1"]}
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and api.token not in cookie
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    view = await (await api.client.get("/v1/page/classes/c-1")).json()
    assert [(s["name"], s["state"], s["sub_app"]) for s in view["students"]] == [
        ("Ada", "online", "fractions"),
        ("Bob", "inactive", ""),  # ts 999: long before today
    ]
    assert (await api.client.get("/v1/page/classes/c-9")).status == 403
    await api.client.delete("/v1/session")
    assert (await api.client.get("/v1/page/classes/c-1")).status == 401
    actions = [(e["action"], e["status"]) for e in api.audit.tail(10)]
    assert ("teacher.sign-in", "401") in actions and ("teacher.sign-in", "200") in actions


async def test_outside_monitoring_hours_nothing_is_read_from_redis(
    api: Api, tmp_path: Path
) -> None:
    elsewhere = "13:00-14:00" if dt.datetime.now(dt.UTC).hour < 12 else "01:00-02:00"
    closed = api.settings.replace(monitoring_days="mon-sun", monitoring_hours=elsewhere)
    # A Redis client at a closed port: any read would fail the request with a 500.
    unreachable = Redis.from_url("redis://127.0.0.1:1/0")
    app = teacher_app(closed, unreachable, TokenBook(api.tokens), api.audit)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/v1/classes/c-1/presence", headers=api.auth())
        assert resp.status == 200
        assert await resp.json() == {"class_id": "c-1", "monitoring": "off"}
        denied = await client.get("/v1/classes/c-9/presence", headers=api.auth())
        assert denied.status == 403  # access is decided before the hour
        stream = await client.get("/v1/classes/c-1/presence/stream", headers=api.auth())
        line = b""
        while not line.startswith(b"event: "):
            line = await asyncio.wait_for(stream.content.readline(), 5)
        assert line == b"event: monitoring\n"
        stream.close()
    finally:
        await client.close()
        await unreachable.aclose()
    statuses = [(e["action"], e["status"]) for e in api.audit.tail(5)]
    assert ("teacher.presence", "monitoring-off") in statuses


async def test_unknown_paths_and_assets_are_404_with_the_same_strict_headers(api: Api) -> None:
    for path in ("/static/secrets.txt", "/static/..%2Fteacher_api.py", "/nowhere"):
        resp = await api.client.get(path)
        assert resp.status == 404, path
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await api.client.get("/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    js = await api.client.get("/static/class.js")
    assert js.headers["Content-Type"].startswith("text/javascript")


async def test_probes_answer_without_a_token_and_readiness_follows_the_token_file(api: Api) -> None:
    assert (await api.client.get("/healthz")).status == 200
    assert (await api.client.get("/readyz")).status == 200
    good = api.tokens.read_bytes()
    api.tokens.write_bytes(b"{not json")  # a broken edit of the mounted Secret
    try:
        broken = await api.client.get("/readyz")
        assert broken.status == 503 and await broken.json() == {"status": "token file unusable"}
        assert (await api.client.get("/healthz")).status == 200  # alive: no restart loop
    finally:
        api.tokens.write_bytes(good)
    assert (await api.client.get("/readyz")).status == 200


async def test_an_address_guessing_tokens_is_refused_for_a_while(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Wrong bearer tokens and wrong sign-ins count; a missing session does not; over the limit the
    right token waits too (429 + Retry-After), while the page and the probes still answer."""
    settings = make_settings(sign_in_max_failures=3, sign_in_window_s=60.0,
                             monitoring_days="mon-sun", monitoring_hours="00:00-24:00")  # fmt: skip
    redis = redis_client(settings)
    tokens = tmp_path / "tokens.json"
    token = issue_token(tokens, "t1", "d1", ["c-1"])
    app = teacher_app(settings, redis, TokenBook(tokens), AuditLog(tmp_path / "audit.log"))
    good, bad = {"Authorization": f"Bearer {token}"}, {"Authorization": "Bearer wrong"}
    try:
        async with TestClient(TestServer(app)) as http:
            for _ in range(5):  # the page asking whether it is signed in: no secret, no guess
                assert (await http.get("/v1/session")).status == 401
            assert (await http.get("/v1/classes/c-1/presence", headers=bad)).status == 401
            assert (await http.post("/v1/session", json={"token": "wrong"})).status == 401
            assert (await http.get("/v1/classes/c-1/presence", headers=good)).status == 200
            assert (await http.post("/v1/session", json={"code": "WRONG-CODE"})).status == 401
            refused = await http.get("/v1/classes/c-1/presence", headers=good)
            assert refused.status == 429
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert "Too many failed sign-ins" in (await refused.json())["error"]
            sign_in = await http.post("/v1/session", json={"token": token})
            assert sign_in.status == 429 and COOKIE not in sign_in.cookies
            assert (await http.get("/")).status == 200
            assert (await http.get("/healthz")).status == 200
    finally:
        await redis.aclose()
