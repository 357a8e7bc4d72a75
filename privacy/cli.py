"""Click commands of the privacy operations; ``csync.cli`` mounts them.

- ``csync purge --district D [--dry-run]`` — dispose of a district's data (privacy.purge).
- ``csync retention`` — the retention in force per store, flagged against settings (exit 1 if exceeded).
- ``csync teacher-api`` — the teacher presence API; ``csync teacher-token add|revoke`` — its tokens.
- ``csync audit tail|verify`` — the audit trail.
"""

from __future__ import annotations

import asyncio
import getpass
import sys

import click
import orjson

from csync.config import load_settings


@click.command("purge")
@click.option("--district", required=True, help="The district whose data is disposed of.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option("--settle-s", default=30.0, show_default=True, help="Wait this long for the worker.")
@click.option("--who", default=None, help="Operator name for the audit log (default: login name).")
@click.option(
    "--revoke-tokens",
    is_flag=True,
    help="First revoke the district's collector and teacher tokens.",
)
def purge(
    district: str, dry_run: bool, settle_s: float, who: str | None, revoke_tokens: bool
) -> None:
    """Remove every trace of a district's students (Redis, roster, worker state, presence topic).

    Revoke the district's collector and teacher tokens first (--revoke-tokens). Prints a report per store
    and appends it to the audit log; exits 1 while something is still pending (re-run later).
    """
    from privacy.audit import AuditLog
    from privacy.offboard import collector_tokens_path, revoke_collector_tokens
    from privacy.purge import PurgeError, purge_district
    from privacy.teacher_tokens import revoke_district, tokens_path

    settings = load_settings()
    if revoke_tokens and not dry_run:
        devices = revoke_collector_tokens(collector_tokens_path(settings), district)
        teachers = revoke_district(tokens_path(settings), district)
        AuditLog.from_settings(settings).append(
            who or getpass.getuser(),
            "tokens.revoke",
            f"district:{district}",
            detail={"collector_tokens": devices, "teacher_tokens": teachers},
        )
        click.echo(
            f"revoked {devices} collector and {teachers} teacher token(s); running collectors and "
            f"teacher APIs refuse them within {settings.token_reload_s:g} s"
        )
    try:
        report = asyncio.run(
            purge_district(
                settings,
                district,
                dry_run=dry_run,
                settle_s=settle_s,
                who=who or getpass.getuser(),
                audit=AuditLog.from_settings(settings),
            )
        )
    except PurgeError as exc:
        raise click.UsageError(str(exc)) from exc
    for line in report.lines():
        click.echo(line)
    if not dry_run and not report.complete:
        sys.exit(1)


@click.command("retention")
@click.option(
    "--no-clickhouse", is_flag=True, help="Skip ClickHouse (e.g. while the sink holds chDB)."
)
def retention(no_clickhouse: bool) -> None:
    """Retention in force per store (Kafka, Redis, ClickHouse, audit); exit 1 if any exceeds settings."""
    from privacy.retention import EXCEEDS, format_rows, retention_report

    rows = asyncio.run(retention_report(load_settings(), clickhouse=not no_clickhouse))
    for line in format_rows(rows):
        click.echo(line)
    if any(r.status == EXCEEDS for r in rows):
        click.echo("some stores keep data longer than settings allow", err=True)
        sys.exit(1)


@click.command("teacher-api")
def teacher_api() -> None:
    """Serve the teacher presence view on TEACHER_API_HOST:TEACHER_API_PORT."""
    from privacy.audit import AuditLog
    from privacy.monitoring_hours import MonitoringError, monitoring_hours
    from privacy.teacher_api import serve
    from privacy.teacher_tokens import TokenBook, tokens_path

    settings = load_settings()
    try:
        monitoring_hours(settings)  # refuse bad hours before serving anything
    except MonitoringError as exc:
        raise click.UsageError(f"monitoring hours: {exc}") from exc
    book = TokenBook(tokens_path(settings))
    click.echo(
        f"teacher API and page on http://{settings.teacher_api_host}:{settings.teacher_api_port}/ "
        f"(tokens: {tokens_path(settings)})"
    )
    asyncio.run(serve(settings, book, AuditLog.from_settings(settings)))


@click.group("teacher-token")
def teacher_token() -> None:
    """Teacher bearer tokens (only their SHA-256 hashes are stored)."""


@teacher_token.command("add")
@click.option("--teacher", required=True)
@click.option("--district", required=True)
@click.option("--class", "classes", multiple=True, required=True, help="Repeat for each class.")
def teacher_token_add(teacher: str, district: str, classes: tuple[str, ...]) -> None:
    """Issue a token; it is printed once and never stored."""
    from privacy.audit import AuditLog
    from privacy.teacher_tokens import issue_token, tokens_path

    settings = load_settings()
    try:
        token = issue_token(tokens_path(settings), teacher, district, list(classes))
    except ValueError as exc:  # a bad token file (TokenFileError) or the probe's reserved district
        raise click.ClickException(str(exc)) from exc
    AuditLog.from_settings(settings).append(
        getpass.getuser(),
        "teacher-token.add",
        f"teacher:{teacher}",
        detail={"classes": len(classes)},
    )
    click.echo(token)


@teacher_token.command("revoke")
@click.option("--teacher", default=None)
@click.option("--district", default=None)
def teacher_token_revoke(teacher: str | None, district: str | None) -> None:
    """Revoke every token of a teacher, or of a whole district."""
    from privacy.audit import AuditLog
    from privacy.teacher_tokens import revoke_district, revoke_teacher, tokens_path

    if (teacher is None) == (district is None):
        raise click.UsageError("give exactly one of --teacher or --district")
    settings = load_settings()
    path = tokens_path(settings)
    if teacher is not None:
        n, target = revoke_teacher(path, teacher), f"teacher:{teacher}"
    else:
        n, target = revoke_district(path, str(district)), f"district:{district}"
    AuditLog.from_settings(settings).append(
        getpass.getuser(), "teacher-token.revoke", target, detail={"tokens": n}
    )
    click.echo(f"revoked {n} token(s)")


@click.group("audit")
def audit() -> None:
    """The audit trail (JSON lines, size-rotated)."""


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Raw JSON lines.")
def audit_tail(count: int, as_json: bool) -> None:
    """The last entries, oldest first."""
    from privacy.audit import AuditLog

    for entry in AuditLog.from_settings(load_settings()).tail(count):
        if as_json:
            click.echo(orjson.dumps(entry).decode())
            continue
        detail = " ".join(f"{k}={v}" for k, v in entry["detail"].items())
        click.echo(
            f"{entry['when']}  {entry['who']:20} {entry['action']:24} {entry['target']}  "
            f"{entry['status']}  {detail}".rstrip()
        )


@audit.command("verify")
def audit_verify() -> None:
    """Check the hash chain of the kept files (detects edited or deleted lines)."""
    from privacy.audit import AuditError, AuditLog

    try:
        n = AuditLog.from_settings(load_settings()).verify_chain()
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"ok: {n} entries, chain intact")
