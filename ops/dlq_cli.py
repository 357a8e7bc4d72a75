"""``csync dlq stats|show|redrive``: look at rejected events and send the repairable ones back.

- ``stats`` — counts by reason, source partition and age; never an event's contents.
- ``show --reason R [--limit N] [--unredacted]`` — records with ids, names and non-contract fields redacted;
  ``--unredacted`` shows the bytes as they are and is written to the audit trail first.
- ``redrive --reason R [--since T] [--dry-run]`` — re-send the originals to the activity topic exactly once
  (see :mod:`ops.dlq`); audited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import re
import time

import click

from csync.config import load_settings
from csync.settings import Settings


def _settings() -> Settings:
    return load_settings()


def parse_since(text: str, now_ms: int) -> int:
    """``--since``: a duration back from now (``90m``, ``6h``, ``2d``) or an ISO 8601 time (UTC if no zone)."""
    found = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if found:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86_400}[found.group(2)]
        return now_ms - int(found.group(1)) * unit * 1000
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is neither a duration like 6h nor an ISO time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


@click.group("dlq")
def dlq() -> None:
    """The dead-letter queue: statistics, redacted records, exactly-once redrive."""


@dlq.command("stats")
def stats() -> None:
    """Counts by reason, source partition and age (no contents)."""
    from ops.dlq import dlq_stats
    from ops.dlq_io import load_ledger, read_dlq

    settings = _settings()
    records = asyncio.run(read_dlq(settings))
    ledger = asyncio.run(load_ledger(settings))
    for line in dlq_stats(records, ledger, int(time.time() * 1000)).lines():
        click.echo(line)


@dlq.command("show")
@click.option("--reason", required=True, help="Rejection reason (the DLQ header `error`).")
@click.option("--limit", default=10, show_default=True, help="At most this many records.")
@click.option("--unredacted", is_flag=True, help="Show ids, names and bytes as sent (audited).")
@click.option("--who", default=None, help="Operator name for the audit log (default: login name).")
def show(reason: str, limit: int, unredacted: bool, who: str | None) -> None:
    """Records of one reason, oldest first; ids and names redacted unless --unredacted."""
    from ops.dlq import show_line
    from ops.dlq_io import read_dlq
    from privacy.audit import AuditLog

    settings = _settings()
    chosen = [r for r in asyncio.run(read_dlq(settings)) if r.reason == reason][: max(0, limit)]
    if unredacted:
        # Audited before anything is shown: the entry names the reason and the count, never contents.
        AuditLog.from_settings(settings).append(
            who or getpass.getuser(),
            "dlq.show.unredacted",
            f"dlq reason={reason[:64]}",
            detail={"records": len(chosen)},
        )
    for rec in chosen:
        click.echo(show_line(rec, unredacted))
    if not chosen:
        click.echo(f"no DLQ record with reason {reason!r}")


@dlq.command("redrive")
@click.option("--reason", required=True, help="Re-send the records of this reason.")
@click.option(
    "--since", default=None, help="Only records that entered the DLQ since (6h, 2d, ISO)."
)
@click.option("--dry-run", is_flag=True, help="Print the plan; send nothing.")
@click.option("--who", default=None, help="Operator name for the audit log (default: login name).")
def redrive_command(reason: str, since: str | None, dry_run: bool, who: str | None) -> None:
    """Re-send rejected originals to the activity topic, exactly once, with a redrive header."""
    from ops.dlq import NEVER_REDRIVEN, Limits, plan_redrive, select
    from ops.dlq_io import load_ledger, read_dlq, record_found, redrive, resolve_uncertain
    from privacy.audit import AuditLog

    if reason in NEVER_REDRIVEN:
        raise click.UsageError(
            f"{reason} is an authorization decision, not a data error: the device must resend with "
            "its own district's token"
        )
    settings = _settings()
    now_ms = int(time.time() * 1000)
    since_ms = parse_since(since, now_ms) if since else None
    records = asyncio.run(read_dlq(settings))
    ledger = asyncio.run(load_ledger(settings))
    found = asyncio.run(resolve_uncertain(settings, ledger))
    if found and not dry_run:
        asyncio.run(record_found(settings, found))
    limits = Limits(
        max_age_ms=settings.max_event_age_h * 3_600_000,
        max_future_ms=settings.max_future_s * 1000,
        lateness_ms=settings.allowed_lateness_s * 1000,
    )
    plan = plan_redrive(select(records, reason, since_ms), ledger, limits, now_ms)
    for line in plan.lines():
        click.echo(line)
    if dry_run or not plan.send:
        click.echo("dry run: nothing sent" if dry_run else "nothing to send")
        return
    sent = asyncio.run(redrive(settings, plan))
    AuditLog.from_settings(settings).append(
        who or getpass.getuser(),
        "dlq.redrive",
        f"dlq reason={reason[:64]}",
        detail={
            "sent": len(sent),
            "skipped_too_old": plan.too_old,
            "skipped_future": plan.in_future,
        },
    )
    click.echo(f"sent {len(sent)} events to {settings.topic_activity}")
