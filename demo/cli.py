"""``csync demo``: the click command (mounted by :mod:`csync.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from csync.config import settings_from_env


@click.command("demo")
@click.option(
    "--minutes", type=float, envvar="DEMO_MINUTES", default=3.0, show_default=True,
    help="Wall minutes the compressed school day lasts (env DEMO_MINUTES).",
)  # fmt: skip
@click.option(
    "--day-hours", type=float, envvar="DEMO_DAY_HOURS", default=6.5, show_default=True,
    help="Length of the simulated school day.",
)  # fmt: skip
@click.option("--districts", type=int, default=3, show_default=True)
@click.option("--workers", type=int, envvar="DEMO_WORKERS", default=2, show_default=True)
@click.option(
    "--headless", is_flag=True, envvar="DEMO_HEADLESS",
    help="No live terminal: write the dashboard to .local/demo/dashboard.txt each second.",
)  # fmt: skip
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Where to write the HTML report (default demo-report/index.html).",
)  # fmt: skip
def demo(
    minutes: float,
    day_hours: float,
    districts: int,
    workers: int,
    headless: bool,
    report_path: Path | None,
) -> None:
    """Run the whole pipeline on the local stack with a live dashboard, then write an HTML report."""
    from demo.orchestrate import DemoOptions, run_demo

    if minutes <= 0 or day_hours <= 0 or districts < 1 or workers < 1:
        raise click.UsageError("--minutes, --day-hours, --districts and --workers must be positive")
    settings = settings_from_env()
    options = DemoOptions(
        minutes=minutes, day_hours=day_hours, districts=districts, workers=workers,
        headless=headless,
    )  # fmt: skip
    if report_path is not None:
        options = DemoOptions(**{**options.__dict__, "report_path": report_path.resolve()})
    try:
        result = run_demo(settings, options)
    except KeyboardInterrupt:
        click.echo("demo interrupted; everything it started is stopped", err=True)
        sys.exit(130)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    if result.report is None:
        sys.exit(1)
