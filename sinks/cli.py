"""Click commands of the sinks; ``csync.cli`` adds them to the ``csync`` group.

- ``csync clickhouse migrate`` — versioned migrations + settings-derived objects (TTL, public view).
- ``csync sink clickhouse`` / ``csync sink redis`` — the long-running sinks.
- ``csync usage --from D --to D [--app X] [--format table|csv|json]`` — the analysts' view only.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import logging
import sys
from typing import Any

import click

from csync.config import load_settings
from csync.settings import Settings
from sinks.clickhouse_client import (
    ChdbPathBusy,
    ClickHouseUrlError,
    clickhouse_client,
    parse_clickhouse_url,
    redact_url,
)
from sinks.usage_read import COLUMNS, fetch_from_sink, query_public


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@click.group("clickhouse")
def clickhouse() -> None:
    """The usage database (CONTRACT §5)."""


@clickhouse.command("migrate")
def clickhouse_migrate() -> None:
    """Apply pending migrations; set the TTL and recreate the public view from settings."""
    from sinks.migrate import migrate

    settings = load_settings()
    _logging()
    try:
        client = clickhouse_client(settings.clickhouse_url)
    except (ClickHouseUrlError, ChdbPathBusy) as exc:
        raise click.ClickException(str(exc)) from exc
    applied = migrate(
        client,
        settings.clickhouse_database,
        ttl_days=settings.usage_ttl_days,
        k_anonymity=settings.k_anonymity,
    )
    click.echo(
        f"{redact_url(settings.clickhouse_url)} {settings.clickhouse_database}: "
        f"applied {applied or 'nothing (up to date)'}; K_ANONYMITY={settings.k_anonymity}, "
        f"USAGE_TTL_DAYS={settings.usage_ttl_days}"
    )


@click.group("sink")
def sink() -> None:
    """Long-running sinks from the internal topics to the serving stores."""


@sink.command("clickhouse")
def sink_clickhouse() -> None:
    """Usage partials → ClickHouse; /metrics and the analysts' read endpoint on 127.0.0.1."""
    from csync.topics import TopicsNotProvisioned
    from sinks.service import run_clickhouse_sink

    _logging()
    try:
        asyncio.run(run_clickhouse_sink(load_settings()))
    except TopicsNotProvisioned as exc:  # topics or migrations: one line naming the command
        raise click.ClickException(str(exc)) from exc


@sink.command("redis")
def sink_redis() -> None:
    """Presence changes → Redis (the teacher view); /metrics on 127.0.0.1."""
    from csync.topics import TopicsNotProvisioned
    from sinks.service import run_redis_sink

    _logging()
    try:
        asyncio.run(run_redis_sink(load_settings()))
    except TopicsNotProvisioned as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("usage")
@click.option("--from", "day_from", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "day_to", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--app", default=None, help="Only this app.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def usage(day_from: dt.datetime, day_to: dt.datetime, app: str | None, fmt: str) -> None:
    """Daily usage per app and sub-app from the analysts' view (cells of at least K students)."""
    settings = load_settings()
    start, end = day_from.date(), day_to.date()
    if end < start:
        raise click.UsageError("--to is before --from")
    rows = read_usage(settings, start, end, app)
    # Every analyst query is on the audit trail (who, range, app filter, row count; no usage data).
    from privacy.audit import record_usage_query

    record_usage_query(settings, start, end, app, len(rows))
    write_rows(rows, fmt)


def read_usage(
    settings: Settings, start: dt.date, end: dt.date, app: str | None
) -> list[dict[str, Any]]:
    """The public view's rows: from the running sink's endpoint, else straight from the store."""
    try:
        target = parse_clickhouse_url(settings.clickhouse_url)
    except ClickHouseUrlError as exc:
        raise click.UsageError(str(exc)) from exc
    if target.kind == "chdb":
        rows = fetch_from_sink(settings.usage_read_port, start, end, app)
        if rows is not None:
            return rows
    try:
        client = clickhouse_client(settings.clickhouse_url)
    except ChdbPathBusy as exc:
        raise click.ClickException(
            f"{exc} (no sink answered on 127.0.0.1:{settings.usage_read_port})"
        ) from exc
    return query_public(client, settings.clickhouse_database, start, end, app)


def write_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    """Print rows as a table, CSV or JSON."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    cells = [[str(r[c]) if c != "active_seconds" else f"{r[c]:.1f}" for c in COLUMNS] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(COLUMNS)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not rows:
        click.echo("(no cells with at least K_ANONYMITY students in this range)", err=True)
