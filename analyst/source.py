"""Where the analyst service reads ``usage.app_daily_public`` from.

- ``CLICKHOUSE_URL=chdb:///path``: the data path belongs to the running ClickHouse sink, so the rows come from
  the sink's read-only endpoint on ``127.0.0.1:{USAGE_READ_PORT}`` (it answers only the public view over a
  date range). The service never opens the chDB path itself: it would take the path from the sink.
- ``CLICKHOUSE_URL=http(s)://…``: the service queries the view with its own client (grant it the role of
  ``deploy/clickhouse/analyst_role.sql``: that view alone).

Either way :func:`analyst.reports.published` re-applies ``K`` to the rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from csync.settings import Settings
from sinks.clickhouse_client import clickhouse_client, parse_clickhouse_url
from sinks.usage_read import fetch_from_sink, query_public

Rows = list[dict[str, Any]]
Reader = Callable[[dt.date, dt.date], Rows]


class SourceUnavailable(RuntimeError):
    """The public view cannot be read now (no sink answering, server down)."""


def reader_for(settings: Settings) -> Reader:
    """A blocking function ``(day_from, day_to) -> rows of the public view`` for these settings."""
    target = parse_clickhouse_url(settings.clickhouse_url)
    if target.kind == "chdb":
        port = settings.usage_read_port

        def from_sink(day_from: dt.date, day_to: dt.date) -> Rows:
            try:
                rows = fetch_from_sink(port, day_from, day_to, None)
            except (OSError, ValueError, KeyError) as exc:  # an HTTP error or a malformed answer
                raise SourceUnavailable(
                    f"the sink's read endpoint failed: {type(exc).__name__}"
                ) from exc
            if rows is None:
                raise SourceUnavailable(f"no ClickHouse sink answers on 127.0.0.1:{port}")
            return rows

        return from_sink
    lock = threading.Lock()
    client: list[Any] = []

    def from_server(day_from: dt.date, day_to: dt.date) -> Rows:
        with lock:  # one client, one query at a time (clickhouse-connect clients are not shared)
            if not client:
                client.append(clickhouse_client(settings.clickhouse_url))
            try:
                return query_public(client[0], settings.clickhouse_database, day_from, day_to)
            except Exception as exc:
                client.clear()
                raise SourceUnavailable(f"ClickHouse query failed: {type(exc).__name__}") from exc

    return from_server


async def read(reader: Reader, day_from: dt.date, day_to: dt.date) -> Rows:
    """Run a blocking reader off the event loop."""
    return await asyncio.to_thread(reader, day_from, day_to)
