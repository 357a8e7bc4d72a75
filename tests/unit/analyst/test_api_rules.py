"""The analyst service's access rules over an in-memory view: tokens, sessions, CSP, audit, errors.

(The numbers against the real pipeline are in ``tests/integration/test_analyst_api.py``.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from analyst.api import COOKIE, CSP, Service, analyst_app
from analyst.catalog import Catalog
from analyst.tokens import AnalystBook, Sessions, issue_token, revoke_analyst
from csync.sign_in_throttle import SignInThrottle
from privacy.audit import AuditLog

DAY = dt.date(2026, 11, 2)
ROWS = [
    {
        "day": DAY.isoformat(),
        "app": "math",
        "sub_app": "a",
        "active_seconds": 120.0,
        "students": 12,
    },
    {"day": DAY.isoformat(), "app": "math", "sub_app": "b", "active_seconds": 60.0, "students": 3},
]
RANGE = {"from": DAY.isoformat(), "to": DAY.isoformat()}


def _service(tmp_path: Path) -> tuple[Service, Path]:
    tokens = tmp_path / "analyst_tokens.json"

    def reader(day_from: dt.date, day_to: dt.date) -> list[dict[str, Any]]:
        return [r for r in ROWS if day_from.isoformat() <= r["day"] <= day_to.isoformat()]

    service = Service(reader, 10, Catalog(), AnalystBook(tokens), Sessions(ttl_s=60),
                      AuditLog(tmp_path / "audit.log"), today=lambda: DAY)  # fmt: skip
    return service, tokens


async def test_api_needs_an_analyst_token_and_audits_every_query(tmp_path: Path) -> None:
    service, tokens = _service(tmp_path)
    token = issue_token(tokens, "a-ops")
    assert token not in tokens.read_text()  # only the hash is stored
    async with TestClient(TestServer(analyst_app(service))) as http:
        assert (await http.get("/v1/usage/daily", params=RANGE)).status == 401
        bad = await http.get(
            "/v1/usage/daily", params=RANGE, headers={"Authorization": "Bearer nope"}
        )
        assert bad.status == 401
        auth = {"Authorization": f"Bearer {token}"}
        ok = await http.get("/v1/usage/daily", params=RANGE, headers=auth)
        assert ok.status == 200 and ok.headers["Content-Security-Policy"] == CSP
        body = await ok.json()
        assert [r["sub_app"] for r in body["rows"]] == ["a"] and body["total"][
            "active_seconds"
        ] == 120.0
        csv = await http.get("/v1/usage/top", params={**RANGE, "format": "csv"}, headers=auth)
        assert (await csv.text()).splitlines()[1].startswith("math,uncatalogued,120.0,12,")
        for params in ({"from": "x", "to": "y"}, {"from": "2026-11-03", "to": "2026-11-02"},
                       {**RANGE, "format": "xml"}, {**RANGE, "bucket": "year"}):  # fmt: skip
            assert (await http.get("/v1/usage/trend", params=params, headers=auth)).status == 400
        revoke_analyst(tokens, "a-ops")
        assert (await http.get("/v1/usage/daily", params=RANGE, headers=auth)).status == 401
    entries = list(AuditLog(tmp_path / "audit.log").entries())
    queries = [e for e in entries if e["action"] == "analyst.query"]
    assert [(e["who"], e["target"]) for e in queries] == [
        ("analyst:a-ops", "/v1/usage/daily 2026-11-02..2026-11-02"),
        ("analyst:a-ops", "/v1/usage/top 2026-11-02..2026-11-02"),
    ]
    assert token not in (tmp_path / "audit.log").read_text()


async def test_the_dashboard_signs_in_by_post_into_an_httponly_strict_cookie(
    tmp_path: Path,
) -> None:
    service, tokens = _service(tmp_path)
    token = issue_token(tokens, "a-ops")
    async with TestClient(TestServer(analyst_app(service))) as http:
        first = await http.get("/", allow_redirects=False)
        assert first.status == 303 and first.headers["Location"] == "/login"
        assert (await http.post("/login", data={"token": "wrong"})).status == 401
        cross = await http.post(
            "/login", data={"token": token}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status == 403
        signed = await http.post("/login", data={"token": token}, allow_redirects=False)
        assert signed.status == 303 and signed.headers["Location"] == "/"  # no token in any URL
        cookie = signed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
        page = await http.get("/", params=RANGE)
        text = await page.text()
        assert (
            page.status == 200 and "Signed in as a-ops" in text and '<script type="module"' in text
        )
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert 'data-value="120.0"' in text and 'data-value="60.0"' not in text
        assert (await http.get("/static/dashboard.js")).status == 200
        assert (await http.get("/static/../api.py")).status == 404
        revoke_analyst(tokens, "a-ops")  # revoking the token ends the session
        assert (await http.get("/", allow_redirects=False)).status == 303
        again = issue_token(tokens, "a-ops")
        assert (
            await http.get("/", allow_redirects=False)
        ).status == 303  # a new token revives nothing
        await http.post("/login", data={"token": again})
        assert (await http.get("/", allow_redirects=False)).status == 200
        await http.post("/logout")
        assert http.session.cookie_jar.filter_cookies(http.make_url("/")).get(COOKIE) is None
        assert (await http.get("/", allow_redirects=False)).status == 303


def test_sessions_expire_and_end() -> None:
    sessions = Sessions(ttl_s=10)
    sid = sessions.start("a-ops", b"h", now=0.0)
    assert sessions.lookup(sid, now=9.0) == ("a-ops", b"h")
    assert sessions.lookup(sid, now=11.0) is None
    sid = sessions.start("a-ops", b"h", now=20.0)
    sessions.end(sid)
    assert sessions.lookup(sid, now=21.0) is None and sessions.lookup(None) is None


def test_the_openapi_document_lists_exactly_the_api_routes(tmp_path: Path) -> None:
    import json

    from csync.settings import PROJECT_ROOT

    doc = json.loads((PROJECT_ROOT / "schemas" / "openapi" / "analyst.v1.json").read_text())
    service, _tokens = _service(tmp_path)
    routes = {
        r.resource.canonical for r in analyst_app(service).router.routes() if r.resource is not None
    }
    api_routes = {r for r in routes if r.startswith("/v1/")}
    assert set(doc["paths"]) == api_routes
    daily = doc["components"]["schemas"]["DailyCell"]
    assert set(daily["required"]) == {
        "day",
        "app",
        "sub_app",
        "name",
        "category",
        "active_seconds",
        "students",
    }


async def test_a_one_time_code_signs_in_once_and_its_session_ends_with_the_token(
    tmp_path: Path,
) -> None:
    import dataclasses

    from analyst.signin import issue_code, redeem
    from analyst.tokens import hash_token

    service, tokens = _service(tmp_path)
    service = dataclasses.replace(service, codes=tmp_path / "codes.json")
    token = issue_token(tokens, "a-ops")
    expired = issue_code(tmp_path / "old.json", "a-ops", hash_token(token), ttl_s=10, now=0.0)
    assert redeem(tmp_path / "old.json", expired, now=11.0) is None
    code = issue_code(tmp_path / "codes.json", "a-ops", hash_token(token))
    assert code not in (tmp_path / "codes.json").read_text() and len(code) == 14
    app = analyst_app(service)
    async with TestClient(TestServer(app)) as http:
        signed = await http.post("/login", data={"token": code.lower()}, allow_redirects=False)
        assert signed.status == 303 and (await http.get("/", allow_redirects=False)).status == 200
        async with TestClient(TestServer(analyst_app(service))) as other:
            again = await other.post("/login", data={"token": code})
            assert again.status == 401  # used up
        revoke_analyst(tokens, "a-ops")
        assert (await http.get("/", allow_redirects=False)).status == 303


async def test_an_unreadable_view_is_a_503_not_a_crash(tmp_path: Path) -> None:
    import dataclasses

    from analyst.source import SourceUnavailable, reader_for
    from csync.settings import Settings
    from csync.stack import free_port

    service, tokens = _service(tmp_path)
    closed = Settings.from_env(
        env={}, clickhouse_url="chdb:///nowhere", usage_read_port=free_port()
    )
    reader = reader_for(closed)
    try:
        reader(DAY, DAY)
    except SourceUnavailable as exc:
        assert "no ClickHouse sink answers" in str(exc)
    else:
        raise AssertionError("a closed read port must be SourceUnavailable")
    token = issue_token(tokens, "a-ops")
    async with TestClient(
        TestServer(analyst_app(dataclasses.replace(service, reader=reader)))
    ) as http:
        auth = {"Authorization": f"Bearer {token}"}
        answer = await http.get("/v1/usage/daily", params=RANGE, headers=auth)
        assert answer.status == 503 and "no ClickHouse sink" in (await answer.json())["error"]


async def test_probes_answer_without_a_token_and_readiness_follows_the_token_file(
    tmp_path: Path,
) -> None:
    service, tokens = _service(tmp_path)
    issue_token(tokens, "a-ops")
    async with TestClient(TestServer(analyst_app(service))) as http:
        assert (await http.get("/healthz")).status == 200
        assert (await http.get("/readyz")).status == 200
        tokens.write_bytes(b'{"version": 1, "analysts": [{"analyst_id": "a"}]}')  # a broken edit
        broken = await http.get("/readyz")
        assert broken.status == 503 and await broken.json() == {"status": "token file unusable"}
        assert (await http.get("/healthz")).status == 200


async def test_an_address_guessing_tokens_is_refused_for_a_while(tmp_path: Path) -> None:
    """Wrong tokens count (form and bearer); requests without a secret do not; once over the limit
    even the right token waits, and the sign-in page still loads to say so."""
    service, tokens = _service(tmp_path)
    service = dataclasses.replace(service, throttle=SignInThrottle(3, 60.0))
    token = issue_token(tokens, "a-ops")
    async with TestClient(TestServer(analyst_app(service))) as http:
        for _ in range(5):  # no secret presented: not a guess
            assert (await http.get("/v1/usage/daily", params=RANGE)).status == 401
        assert (await http.post("/login", data={"token": "wrong"})).status == 401
        bad = {"Authorization": "Bearer wrong"}
        assert (await http.get("/v1/usage/daily", params=RANGE, headers=bad)).status == 401
        good = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/v1/usage/daily", params=RANGE, headers=good)).status == 200
        assert (await http.post("/login", data={"token": "wrong again"})).status == 401
        refused = await http.post("/login", data={"token": token}, allow_redirects=False)
        assert refused.status == 429 and COOKIE not in refused.cookies
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "Too many failed sign-ins" in await refused.text()
        api = await http.get("/v1/usage/daily", params=RANGE, headers=good)
        assert api.status == 429 and "Too many failed sign-ins" in (await api.json())["error"]
        assert (await http.get("/login")).status == 200
        assert (await http.get("/healthz")).status == 200
