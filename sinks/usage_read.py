"""The analysts' read path: ``usage.app_daily_public`` only (CONTRACT §5).

With chDB the data path belongs to one process — the running ClickHouse sink. So the sink serves a tiny
read-only HTTP endpoint on ``127.0.0.1:{USAGE_READ_PORT}`` answering exactly one query, the public view over a
date range (optionally one app); it runs no SQL it is sent. ``csync usage`` asks that endpoint first; when no
sink answers it opens the data path itself (and fails clearly if another process holds it). With a ClickHouse
server every reader simply queries the view.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from sinks.migrate import check_identifier

COLUMNS = ("day", "app", "sub_app", "active_seconds", "students")


def query_public(
    client: Client, db: str, day_from: dt.date, day_to: dt.date, app: str | None = None
) -> list[dict[str, Any]]:
    """Rows of ``{db}.app_daily_public`` with ``day_from <= day <= day_to`` (and ``app``), ordered."""
    db = check_identifier(db)
    where = "day >= %(f)s AND day <= %(t)s" + (" AND app = %(app)s" if app else "")
    result = client.query(
        f"SELECT toString(day), app, sub_app, active_seconds, students "  # noqa: S608 - db checked
        f"FROM {db}.app_daily_public WHERE {where} ORDER BY day, app, sub_app",
        parameters={"f": day_from.isoformat(), "t": day_to.isoformat(), "app": app or ""},
    )
    return [
        {"day": d, "app": a, "sub_app": s, "active_seconds": float(sec), "students": int(n)}
        for d, a, s, sec, n in result.result_rows
    ]


def parse_range(params: Any) -> tuple[dt.date, dt.date, str | None]:
    """``from``/``to`` (ISO dates, inclusive) and optional ``app`` from a mapping; ValueError if bad."""
    day_from = dt.date.fromisoformat(str(params["from"]))
    day_to = dt.date.fromisoformat(str(params["to"]))
    if day_to < day_from:
        raise ValueError("--to is before --from")
    app = params.get("app") or None
    return day_from, day_to, app


def read_app(client: Client, db: str) -> web.Application:
    """The read-only endpoint: ``GET /usage?from=YYYY-MM-DD&to=YYYY-MM-DD[&app=X]`` → JSON rows."""
    lock = asyncio.Lock()  # one chDB query at a time, beside the sink's inserts

    async def usage(request: web.Request) -> web.Response:
        try:
            day_from, day_to, app = parse_range(request.query)
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": f"bad range: {exc}"}, status=400)
        async with lock:
            rows = await asyncio.to_thread(query_public, client, db, day_from, day_to, app)
        return web.json_response({"rows": rows})

    app = web.Application()
    app.router.add_get("/usage", usage)
    return app


def fetch_from_sink(
    port: int, day_from: dt.date, day_to: dt.date, app: str | None, timeout_s: float = 30.0
) -> list[dict[str, Any]] | None:
    """Rows from a running sink's endpoint, or ``None`` when no sink listens on ``port``."""
    query = {"from": day_from.isoformat(), "to": day_to.isoformat()}
    if app:
        query["app"] = app
    url = f"http://127.0.0.1:{port}/usage?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback http
            rows: list[dict[str, Any]] = json.loads(response.read())["rows"]
            return rows
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, ConnectionError):
        return None
