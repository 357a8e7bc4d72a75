"""Click commands of the producers; the ``csync`` group in :mod:`csync.cli` wires them in."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import click

from csync.config import load_settings
from producers.simulator import SendOptions, run_simulation, write_truth
from producers.simulator_model import SimulationConfig


class Duration(click.ParamType):
    """Seconds, written ``90``, ``90s``, ``2m`` or ``1h``."""

    name = "duration"
    _units = {"s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        scale = self._units.get(text[-1:], None)
        number = text[:-1] if scale is not None else text
        try:
            seconds = float(number) * (scale or 1.0)
        except ValueError:
            self.fail(f"{value!r} is not a duration like 60, 60s, 2m or 1h", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return seconds


@click.command("simulate")
@click.option("--count", type=int, help="Send this many events, then stop.")
@click.option(
    "--duration", type=Duration(), help="Send for this long (wall clock): 90, 90s, 2m, 1h."
)
@click.option("--rate", type=float, default=0.0, show_default=True, help="Events/s cap (0: none).")
@click.option(
    "--speed", type=float, default=1.0, show_default=True,
    help="Simulated seconds per wall second (0: no schedule, as fast as --rate allows).",
)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--districts", type=int, default=1, show_default=True)
@click.option("--schools", type=int, default=2, show_default=True, help="Schools per district.")
@click.option("--classes", type=int, default=4, show_default=True, help="Classes per school.")
@click.option("--class-size", type=int, default=25, show_default=True)
@click.option(
    "--students", type=click.IntRange(min=1),
    help="Students per district: sets --classes and --class-size (classes of about 25).",
)  # fmt: skip
@click.option("--dup-rate", type=float, default=0.0, show_default=True)
@click.option("--reorder-rate", type=float, default=0.0, show_default=True)
@click.option("--invalid-rate", type=float, default=0.0, show_default=True)
@click.option("--single", is_flag=True, help="One event per record instead of envelopes.")
@click.option("--no-roster", is_flag=True, help="Do not produce the roster records.")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--oneroster-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Also write the simulated students as a OneRoster 1.1 CSV export here.",
)  # fmt: skip
def simulate(
    count: int | None,
    duration: float | None,
    rate: float,
    speed: float,
    seed: int,
    districts: int,
    schools: int,
    classes: int,
    class_size: int,
    students: int | None,
    dup_rate: float,
    reorder_rate: float,
    invalid_rate: float,
    single: bool,
    no_roster: bool,
    truth_path: Path | None,
    oneroster_dir: Path | None,
) -> None:
    """Simulate school districts' devices and send their activity to Kafka."""
    if count is None and duration is None:
        raise click.UsageError("give --count or --duration")
    settings = load_settings()
    if students is not None:
        # Classes of about 25 that add up to exactly `students` when it divides evenly.
        classes = max(1, math.ceil(students / (schools * 25)))
        class_size = math.ceil(students / (schools * classes))
    config = SimulationConfig(
        seed=seed,
        districts=districts,
        schools_per_district=schools,
        classes_per_school=classes,
        students_per_class=class_size,
        dup_rate=dup_rate,
        reorder_rate=reorder_rate,
        invalid_rate=invalid_rate,
        allowed_lateness_s=settings.allowed_lateness_s,
    )
    options = SendOptions(
        count=count, duration_s=duration, rate=rate, speed=speed, single=single,
        with_roster=not no_roster,
    )  # fmt: skip
    if oneroster_dir is not None:
        from producers.roster_loader import write_oneroster
        from producers.simulator_model import build_population

        write_oneroster(oneroster_dir, build_population(config))
    report = asyncio.run(run_simulation(settings, config, options))
    if truth_path is not None:
        write_truth(truth_path, report, settings, int(time.time() * 1000))
        click.echo(f"truth: {truth_path}", err=True)
    click.echo(
        f"done: {report.events_sent} valid + {report.invalid_sent} invalid events in "
        f"{report.records_sent} records, {report.rate:,.0f} events/s, "
        f"{len(report.acked_events)} valid events acknowledged",
        err=True,
    )


@click.command("collector")
def collector() -> None:
    """Run the device collector (HTTP → validated, minimised events in Kafka)."""
    from producers.collector import ListenError, TokenError, serve

    settings = load_settings()
    try:
        asyncio.run(serve(settings))
    except (TokenError, ListenError) as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass


@click.command("collector-token")
@click.argument("district_id")
@click.argument("token")
def collector_token(district_id: str, token: str) -> None:
    """Add TOKEN for DISTRICT_ID to the collector's token file (only its hash is stored)."""
    from producers.collector import add_token, tokens_path

    path = tokens_path(load_settings())
    try:
        add_token(path, token, district_id)
    except ValueError as exc:  # the probe's reserved district
        raise click.ClickException(str(exc)) from exc
    click.echo(f"token for {district_id} stored (hashed) in {path}")


@click.group("roster")
def roster() -> None:
    """The roster (names and classes of students) from the district's SIS."""


@roster.command("load")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--district", "district_id", required=True, help="District id of the export.")
def roster_load(path: Path, district_id: str) -> None:
    """Load a OneRoster 1.1 CSV export (users, enrollments, classes) into roster.v1."""
    from producers.roster_loader import RosterLoadError, load_roster

    try:
        plan = asyncio.run(load_roster(load_settings(), path, district_id))
    except RosterLoadError as exc:
        raise click.ClickException(str(exc)) from exc
    for reason in plan.skipped:
        click.echo(f"skipped {reason}", err=True)
    click.echo(
        f"{len(plan.students)} students: {len(plan.upserts)} new or changed, "
        f"{len(plan.deletes)} removed (tombstoned)"
    )
