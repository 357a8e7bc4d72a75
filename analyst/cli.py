"""The analysts' commands: ``csync analyst-api``, ``csync analyst-token``, ``csync usage export``.

:func:`mount` adds them to the ``csync`` group; ``usage`` stays the command it was (``csync usage --from …``)
and gains the ``export`` subcommand.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import logging
from pathlib import Path
from typing import Any

import click

from analyst.catalog import CatalogError, load_catalog
from analyst.export import PERIODS, export_period
from analyst.source import SourceUnavailable, reader_for
from analyst.tokens import (
    TokenFileError,
    issue_token,
    list_analysts,
    parse_tokens_file,
    revoke_analyst,
    tokens_path,
)
from csync.settings import Settings
from privacy.audit import AuditLog


def _settings() -> Settings:
    from csync.config import load_settings

    return load_settings()


@click.command("analyst-api")
def analyst_api() -> None:
    """Usage read API and dashboard over the public view (127.0.0.1:ANALYST_API_PORT)."""
    from analyst.service import run_analyst_api

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = _settings()
    try:
        load_catalog(settings.analyst_catalog_path)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from exc
    asyncio.run(run_analyst_api(settings))


@click.group("analyst-token")
def analyst_token() -> None:
    """Analyst bearer tokens (only SHA-256 hashes are stored; revocation is live)."""


@analyst_token.command("add")
@click.argument("analyst_id")
def token_add(analyst_id: str) -> None:
    """Issue a token for ANALYST_ID and print it once."""
    settings = _settings()
    try:
        token = issue_token(tokens_path(settings), analyst_id)
    except TokenFileError as exc:
        raise click.ClickException(str(exc)) from exc
    AuditLog.from_settings(settings).append(getpass.getuser(), "analyst_token.add", analyst_id)
    click.echo(token)


@analyst_token.command("revoke")
@click.argument("analyst_id")
def token_revoke(analyst_id: str) -> None:
    """Remove every token of ANALYST_ID (their dashboard sessions end too)."""
    settings = _settings()
    removed = revoke_analyst(tokens_path(settings), analyst_id)
    AuditLog.from_settings(settings).append(
        getpass.getuser(), "analyst_token.revoke", analyst_id, detail={"removed": removed}
    )
    click.echo(f"revoked {removed} token(s) of {analyst_id}")


@analyst_token.command("sign-in-code")
@click.argument("analyst_id")
@click.option("--minutes", default=15, show_default=True, type=click.IntRange(1, 60))
def token_code(analyst_id: str, minutes: int) -> None:
    """Print a one-time dashboard sign-in code for ANALYST_ID (who must hold a token)."""
    from analyst.signin import codes_path, issue_code

    settings = _settings()
    entries = [(h, who) for h, who in parse_tokens_file(tokens_path(settings)) if who == analyst_id]
    if not entries:
        raise click.ClickException(f"{analyst_id} holds no analyst token (csync analyst-token add)")
    code = issue_code(
        codes_path(settings), analyst_id, bytes.fromhex(entries[0][0]), ttl_s=minutes * 60
    )
    AuditLog.from_settings(settings).append(
        getpass.getuser(), "analyst_token.sign_in_code", analyst_id
    )
    click.echo(code)


@analyst_token.command("list")
def token_list() -> None:
    """Analysts holding a token."""
    for who in list_analysts(tokens_path(_settings())):
        click.echo(who)


@click.command("export")
@click.option("--period", type=click.Choice(PERIODS), default="weekly", show_default=True)
@click.option("--to", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Reference day (UTC; default today): the period is the last complete one before it.")  # fmt: skip
@click.option("--force", is_flag=True, help="Rewrite a period already exported as final.")
def export(period: str, out_dir: Path, as_of: dt.datetime | None, force: bool) -> None:
    """Write the last complete period's CSVs and HTML snapshot to DIR/{period label}/ (idempotent)."""
    settings = _settings()
    now = dt.datetime.now(dt.UTC)
    if as_of is not None:
        now = dt.datetime.combine(as_of.date(), now.timetz())
    try:
        result = export_period(reader_for(settings), settings.k_anonymity,
                               load_catalog(settings.analyst_catalog_path), out_dir,
                               PERIODS[PERIODS.index(period)],
                               now=now, max_event_age_h=settings.max_event_age_h,
                               force=force)  # fmt: skip
    except (CatalogError, SourceUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    AuditLog.from_settings(settings).append(
        f"analyst:{getpass.getuser()}", "usage.export", result.path.name,
        detail={"written": int(result.written), "final": int(result.final)},
    )  # fmt: skip
    state = "written" if result.written else "already exported (final), skipped"
    click.echo(
        f"{result.path}: {state}{'' if result.final else ' (not final yet: late events may still arrive)'}"
    )


class UsageGroup(click.Group):
    """``csync usage --from … --to …`` runs the original command; ``csync usage export …`` the export."""

    def __init__(self, plain: click.Command, *more: click.Command) -> None:
        super().__init__("usage", help=plain.help, short_help=plain.short_help)
        self.plain = plain
        plain.epilog = (
            "Scheduled export: csync usage export --period weekly --to DIR; repair of closed days: "
            "csync usage rebuild --from DAY --to DAY (see their --help)."
        )
        for command in (export, *more):
            self.add_command(command)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        if args and args[0] in self.commands:
            return super().make_context(info_name, args, parent, **extra)
        return self.plain.make_context(info_name, args, parent, **extra)
