"""``csync usage rebuild --from DAY --to DAY``: recompute closed days' usage rollups from the raw topic.

See :mod:`ops.rebuild` (which days, and how) and :mod:`ops.rebuild_run` (the atomic swap). Audited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import time

import click


@click.command("rebuild")
@click.option("--from", "day_from", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "day_to", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--dry-run", is_flag=True, help="Check the days and count the rows; change nothing.")
@click.option("--who", default=None, help="Operator name for the audit log (default: login name).")
def usage_rebuild(
    day_from: dt.datetime, day_to: dt.datetime, dry_run: bool, who: str | None
) -> None:
    """Rebuild the usage rollups of closed days from the raw topic and swap them in atomically.

    Stop the ClickHouse sink first (the workers keep running; nothing is lost). A rerun changes nothing.
    """
    from csync.config import load_settings
    from ops.rebuild import (
        WARMUP_MS,
        Horizons,
        day_start_ms,
        rebuilt_rows,
        refusals,
        replay_intervals,
    )
    from ops.rebuild_run import raw_horizons, read_raw, swap_days
    from privacy.audit import AuditLog
    from schemas.decoder import Limits
    from sinks.clickhouse_client import ChdbPathBusy, clickhouse_client
    from streams.partition import params_of

    settings = load_settings()
    first, last = day_from.date(), day_to.date()
    retention, first_kept = asyncio.run(raw_horizons(settings))
    params = params_of(settings)
    rules = params.rules
    slack = rules.lateness_ms + rules.close_after_ms + rules.max_gap_ms
    horizons = Horizons(
        int(time.time() * 1000), retention, first_kept, settings.max_event_age_h * 3_600_000, slack
    )
    problems = refusals(first, last, horizons)
    if problems:
        raise click.ClickException("cannot rebuild:\n  " + "\n  ".join(problems))
    records = asyncio.run(read_raw(settings, day_start_ms(first) - WARMUP_MS))
    intervals = replay_intervals(
        records, settings.partitions, rules, Limits.from_settings(settings)
    )
    rows = rebuilt_rows(intervals, first, last)
    click.echo(f"{first}..{last}: {len(records)} raw records replayed, {len(rows)} usage rows")
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    try:
        client = clickhouse_client(settings.clickhouse_url)
    except ChdbPathBusy as exc:
        raise click.ClickException(f"{exc}: stop the ClickHouse sink first") from exc
    swap_days(client, settings.clickhouse_database, first, last, rows)
    AuditLog.from_settings(settings).append(
        who or getpass.getuser(),
        "usage.rebuild",
        f"usage.app_minute {first.isoformat()}..{last.isoformat()}",
        detail={"rows": len(rows), "records": len(records)},
    )
    click.echo("swapped in: the rollups of these days are rebuilt")
