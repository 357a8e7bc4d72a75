"""``csync demo`` / ``make demo``: the whole pipeline on the local real services, watched live, then reported.

1. a local stack of its own (Kafka 4 KRaft, redis-server, chDB folder, as ``make up`` sets up) under
   ``.local/demo/stack``, emptied at each start; topics and ClickHouse migrations;
2. a OneRoster export of the simulated students (one folder per district), loaded with ``csync roster load``,
   so teachers see names; a demo teacher token and a collector token per the privacy rules (hashes on disk);
3. the pipeline: N stream workers, the Redis sink, the ClickHouse sink (owner of the chDB path, serving the
   analysts' view read-only), the lag monitor, the collector and the teacher API — each its own process group,
   with free ports and a log file under ``.local/demo/logs``;
4. the simulator replays a compressed school day (``DEMO_DAY_HOURS`` in ``DEMO_MINUTES``) into Kafka, while one
   more district reports live through the collector (:mod:`demo.fleet`);
5. a dashboard every second (:mod:`demo.dashboard`), then ``demo-report/index.html`` (:mod:`demo.report`).

Why the demo raises ``PRESENCE_TIMEOUT_S``: a compressed day's events are placed so that they catch up with the
wall clock only at the end of the run (see :mod:`producers.simulator`); until then they are up to
``DEMO_DAY_HOURS`` old by the worker's clock, and with the contract's 60 s timeout every simulated student
would show offline. With the timeout set to the length of the simulated day, "online" follows the students'
own ``idle``/``logout`` events. The live collector district keeps the contract's rule in spirit (its events
are live), though the timeout is the same process setting.

Why a fresh stack of its own: a second run replays the same simulated devices over the same hours. On a stack
that kept the first run's worker state, every replayed event would be *late* (CONTRACT §5: behind the device's
newest event by more than the allowed lateness) and attribute nothing. Nor should simulated districts mix
with what a developer keeps in the ``make up`` stack. The data stays on disk after the run (the summary says
where); the next demo starts empty.

Ctrl-C (or SIGTERM/SIGHUP) at any point stops everything the demo started (:mod:`demo.processes`).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import secrets
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live

from analyst.catalog import SAMPLE_CATALOG, load_catalog
from analyst.signin import ready_session
from csync import stack as local_stack
from csync.settings import PROJECT_ROOT, Settings
from demo import probe
from demo.dashboard import ProcessRow, Snapshot, render, render_text
from demo.fleet import CollectorFleet
from demo.processes import Child, Supervisor, raise_on_signals, restore_signals, sweep
from demo.report import Reading, write_report
from privacy.teacher_web import page_invitation
from producers.roster_loader import write_oneroster
from producers.simulator_model import SimulationConfig, Student, build_population

DEMO_TEACHER = "t-demo"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs and for how long."""

    minutes: float = 3.0
    """Wall minutes of simulated school day (``DEMO_MINUTES``)."""
    day_hours: float = 6.5
    """Length of the simulated school day compressed into ``minutes``."""
    districts: int = 3
    schools: int = 3
    classes: int = 4
    class_size: int = 25
    workers: int = 2
    invalid_rate: float = 0.002
    dup_rate: float = 0.01
    reorder_rate: float = 0.02
    seed: int = 7
    headless: bool = False
    """Render the dashboard to ``<demo_dir>/dashboard.txt`` instead of the terminal."""
    start_stack: bool = True
    """Start (and afterwards stop) a fresh stack of the demo's own; False = use ``settings`` as given."""
    drain_s: float = 20.0
    """After the simulator ends, wait at most this long for the consumers to catch up."""
    refresh_s: float = 1.0
    demo_dir: Path = PROJECT_ROOT / ".local" / "demo"
    report_path: Path = PROJECT_ROOT / "demo-report" / "index.html"

    @property
    def speed(self) -> float:
        return self.day_hours * 3600 / (self.minutes * 60)

    def population(self) -> SimulationConfig:
        """The simulated districts (the collector's live district is one more, see :func:`live_students`)."""
        return SimulationConfig(
            seed=self.seed,
            districts=self.districts,
            schools_per_district=self.schools,
            classes_per_school=self.classes,
            students_per_class=self.class_size,
            dup_rate=self.dup_rate,
            reorder_rate=self.reorder_rate,
            invalid_rate=self.invalid_rate,
        )


@dataclass
class DemoResult:
    """What a finished demo leaves behind."""

    report: Path | None
    dashboard_text: str
    snapshots: int
    max_online: int
    max_view_seconds: float
    roster_seen: bool
    notes: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    """Every process the demo started (all stopped when it returns)."""


def live_students(options: DemoOptions) -> tuple[str, list[Student]]:
    """The collector district: the one after the simulator's districts, with the same shape."""
    config = SimulationConfig(
        seed=options.seed,
        districts=options.districts + 1,
        schools_per_district=1,
        classes_per_school=options.classes,
        students_per_class=options.class_size,
    )
    district = f"d-{options.districts + 1:03d}"
    return district, [s for s in build_population(config) if s.district_id == district]


class Rates:
    """Per-second rates of counters over a sliding window of readings."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self.points: dict[str, deque[tuple[float, float]]] = {}

    def add(self, name: str, t: float, value: float | None) -> float | None:
        if value is None:
            return None
        points = self.points.setdefault(name, deque())
        points.append((t, value))
        while len(points) > 2 and t - points[0][0] > self.window_s:
            points.popleft()
        (t0, v0), (t1, v1) = points[0], points[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else None


class Demo:
    """One run of the demo (see the module docstring)."""

    def __init__(self, settings: Settings, options: DemoOptions) -> None:
        self.options = options
        self.base = settings
        self.settings = settings
        self.dir = options.demo_dir
        self.supervisor: Supervisor | None = None
        self.started_stack = False
        self.data_root = Path(settings.data_dir)
        self.notes: list[str] = []
        self.children: dict[str, tuple[Child, int | None]] = {}
        self.teacher_token = ""
        self.class_id = ""
        self.fleet: CollectorFleet | None = None
        self.rates = Rates()
        self.readings: list[Reading] = []
        self.sim_start_wall = 0.0
        self.sim_start_ms = 0
        self.last_usage: probe.UsageTotals | None = None
        self._caught_up_in_a_row = 0
        self._usage_history: deque[tuple[float, probe.UsageTotals | None]] = deque()

    # ------------------------------------------------------------------------------------------ setup
    def say(self, message: str) -> None:
        print(f"[demo] {message}", file=sys.stderr, flush=True)

    def prepare(self) -> None:
        """Stack, settings with free ports, topics, migrations, roster, tokens."""
        swept = sweep(self.dir / "pids.json")
        if swept:
            self.say(f"stopped what a previous demo left running: {', '.join(swept)}")
        logs = self.dir / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        self.supervisor = Supervisor(logs, self.dir / "pids.json")
        if self.options.start_stack:
            self._fresh_stack()
        free = local_stack.free_port
        self.settings = self.settings.replace(
            presence_timeout_s=max(
                self.settings.presence_timeout_s, math.ceil(self.options.day_hours * 3600) + 300
            ),
            sink_clickhouse_metrics_port=free(),
            sink_redis_metrics_port=free(),
            usage_read_port=free(),
            lag_metrics_port=free(),
            lag_sample_interval_s=2.0,
            metrics_port=free(),
            collector_port=free(),
            collector_metrics_port=free(),
            teacher_api_port=free(),
            monitoring_days="mon-sun",  # a demo's school day runs at any hour
            monitoring_hours="00:00-24:00",
            teacher_tokens_path=str(self.dir / "teacher_tokens.json"),
            analyst_api_port=free(),
            analyst_tokens_path=str(self.dir / "analyst_tokens.json"),
            analyst_catalog_path=str(SAMPLE_CATALOG),
            collector_tokens_file=str(self.dir / "collector_tokens.json"),
            audit_log_path=str(self.dir / "audit" / "audit.log"),
        )
        self._check("topics", ["topics", "create"], 60)
        self._check("migrate", ["clickhouse", "migrate"], 120)
        self._roster_and_tokens()

    def _fresh_stack(self) -> None:
        """A stack of the demo's own under ``<demo_dir>/stack``, emptied first (see the module docstring)."""
        root = self.dir / "stack"
        leftover = local_stack.down(root)  # a previous demo killed before it could stop its stack
        if leftover:
            self.say(f"stopped the stack a previous demo left running: {', '.join(leftover)}")
        shutil.rmtree(root, ignore_errors=True)

        def port(variable: str, default: int) -> int:
            wanted = int(os.environ.get(variable, default))
            return wanted if not local_stack.port_open(wanted) else local_stack.free_port()

        self.data_root = root
        stack = local_stack.up(
            root, kafka_port=port("KAFKA_PORT", 9092), redis_port=port("REDIS_PORT", 6379)
        )
        self.started_stack = True
        self.settings = self.settings.replace(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            clickhouse_url=stack.clickhouse_url,
            data_dir=str(root),
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1", **extra}

    def _check(self, name: str, args: list[str], timeout_s: float) -> None:
        assert self.supervisor is not None  # noqa: S101 - prepare() made it
        self.say(f"{name}: csync {' '.join(args)}")
        code = self.supervisor.run(name, args, self.env(), timeout_s)
        log = self.dir / "logs" / f"{name}.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        if code == 1 and args[:2] == ["topics", "create"] and "Error" not in tail:
            # Topics made by an older version keep their old settings (e.g. segment.ms): the pipeline
            # runs with them; the operator decides whether to alter them.
            self.notes.append(f"some topics exist with other settings than today's: {log}")
            return
        if code != 0:
            raise RuntimeError(f"csync {' '.join(args)} failed ({code}); {log}:\n{tail}")

    def _roster_and_tokens(self) -> None:
        from privacy.teacher_tokens import issue_token
        from producers.collector import add_token

        students = build_population(self.options.population())
        live_district, live = live_students(self.options)
        by_district: dict[str, list[Student]] = {}
        for s in [*students, *live]:
            by_district.setdefault(s.district_id, []).append(s)
        folder = self.dir / "oneroster"
        shutil.rmtree(folder, ignore_errors=True)
        for district, members in sorted(by_district.items()):
            write_oneroster(folder / district, members)
            self._check(
                f"roster-{district}",
                ["roster", "load", str(folder / district), "--district", district],
                60,
            )
        first = students[0]
        self.class_id = first.classes[0]
        tokens = Path(self.settings.teacher_tokens_path)
        tokens.unlink(missing_ok=True)
        self.teacher_token = issue_token(tokens, DEMO_TEACHER, first.district_id, [self.class_id])
        collector_tokens = Path(self.settings.collector_tokens_file)
        collector_tokens.unlink(missing_ok=True)
        device_token = secrets.token_urlsafe(24)
        add_token(collector_tokens, device_token, live_district)
        fleet_config = SimulationConfig(seed=self.options.seed)
        self.fleet = CollectorFleet(self.settings.collector_port, device_token, fleet_config, live)

    # ------------------------------------------------------------------------------------------ run
    def start_pipeline(self) -> None:
        """Every long-running process, each with its own ports and log; wait until they answer."""
        assert self.supervisor is not None  # noqa: S101
        s = self.settings
        plan: list[tuple[str, list[str], int | None, dict[str, str]]] = []
        for i in range(self.options.workers):
            web = local_stack.free_port()
            plan.append((f"worker-{i + 1}", ["worker"], web, {"WORKER_WEB_PORT": str(web)}))
        plan += [
            ("sink-redis", ["sink", "redis"], s.sink_redis_metrics_port, {}),
            ("sink-clickhouse", ["sink", "clickhouse"], s.sink_clickhouse_metrics_port, {}),
            ("lag-monitor", ["lag", "serve"], s.lag_metrics_port, {}),
            ("collector", ["collector"], s.collector_port, {}),
            ("teacher-api", ["teacher-api"], s.teacher_api_port, {}),
            ("analyst-api", ["analyst-api"], s.analyst_api_port, {}),
        ]
        for name, args, port, extra in plan:
            self.children[name] = (self.supervisor.start(name, args, self.env(**extra)), port)
        deadline = time.monotonic() + 90
        waiting: dict[str, int] = {n: p for n, (_, p) in self.children.items() if p is not None}
        waiting[f"usage view (port {s.usage_read_port})"] = s.usage_read_port
        while waiting and time.monotonic() < deadline:
            for name, port in list(waiting.items()):
                if local_stack.port_open(port):
                    del waiting[name]
            for name, (child, _) in self.children.items():
                if not child.alive():
                    raise RuntimeError(f"{name} exited at start; see {child.log}")
            time.sleep(0.3)
        if waiting:
            self.notes.append(f"not answering after 90 s: {', '.join(waiting)}")
        self.say("pipeline up: " + ", ".join(self.children))
        self.say(page_invitation(s.teacher_api_host, s.teacher_api_port, self.teacher_token,
                                 self.class_id))  # fmt: skip
        self.say(ready_session(s))

    def start_simulator(self) -> Child:
        assert self.supervisor is not None  # noqa: S101
        o = self.options
        args = [
            "simulate",
            f"--duration={o.minutes * 60:.0f}",
            f"--speed={o.speed:.3f}",
            f"--seed={o.seed}",
            f"--districts={o.districts}",
            f"--schools={o.schools}",
            f"--classes={o.classes}",
            f"--class-size={o.class_size}",
            f"--dup-rate={o.dup_rate}",
            f"--reorder-rate={o.reorder_rate}",
            f"--invalid-rate={o.invalid_rate}",
            "--no-roster",
        ]
        child = self.supervisor.start("simulator", args, self.env())
        self.children["simulator"] = (child, None)
        span_ms = o.day_hours * 3600 * 1000
        self.sim_start_wall = time.time()
        self.sim_start_ms = int(self.sim_start_wall * 1000 - span_ms + span_ms / o.speed)
        if self.fleet is not None:
            self.fleet.start()
        return child

    def snapshot(self, phase: str) -> Snapshot:
        """Read everything the dashboard shows (each probe bounded by a short timeout)."""
        s, now = self.settings, time.time()
        elapsed = now - self.sim_start_wall if self.sim_start_wall else 0.0
        sim_ms = (
            int(self.sim_start_ms + elapsed * self.options.speed * 1000)
            if self.sim_start_wall
            else None
        )
        workers = [
            probe.scrape(p) for n, (_, p) in self.children.items() if n.startswith("worker") and p
        ]
        sinks = [
            probe.scrape(s.sink_redis_metrics_port),
            probe.scrape(s.sink_clickhouse_metrics_port),
        ]
        lag = probe.lag_of(probe.scrape(s.lag_metrics_port))
        valid = probe.total(workers, "csync_events_valid_total")
        invalid = probe.total(workers, "csync_events_invalid_total")
        counts: dict[str, float | None] = {
            "produced": self._produced(),
            "collector": float(self.fleet.accepted) if self.fleet else None,
            "processed": None if valid is None else valid + (invalid or 0.0),
            "presence writes": probe.total(sinks, "csync_sink_rows_total", sink="redis"),
            "usage rows": probe.total(sinks, "csync_sink_rows_total", sink="clickhouse"),
        }
        rates = {k: self.rates.add(k, now, v) for k, v in counts.items()}
        dlq = probe.by_label(workers, "csync_dlq_records_total", "reason")
        rows = probe.usage_view(s.usage_read_port, dt.datetime.now(dt.UTC).date())
        if rows is not None:
            self.last_usage = probe.usage_totals(rows)
            if sim_ms is not None:
                seconds = {app: v[0] for app, v in self.last_usage.apps.items()}
                self.readings.append(Reading(sim_ms, seconds))
        notes = list(self.notes)
        if self.fleet is not None and self.fleet.errors:
            notes.append(self.fleet.errors[-1])
        processes = [
            ProcessRow(n, c.pid, p, c.alive(), str(c.log)) for n, (c, p) in self.children.items()
        ]
        return Snapshot(
            elapsed_s=elapsed,
            total_s=self.options.minutes * 60,
            sim_ms=sim_ms,
            speed=self.options.speed,
            phase=phase,
            rates=rates,
            counts=counts,
            lag=lag,
            dlq=dlq,
            online=probe.online_by_district(s.redis_url, s.key_prefix),
            usage=self.last_usage,
            recent=self._recent(now),
            class_id=self.class_id,
            roster=probe.teacher_view(s.teacher_api_port, self.teacher_token, self.class_id),
            processes=processes,
            notes=notes,
        )

    def _produced(self) -> float | None:
        sim = self.children.get("simulator")
        if sim is None:
            return None
        sent = probe.simulator_sent(sim[0].log)
        return None if sent is None else float(sent)

    def _recent(self, now: float, window_s: float = 20.0) -> dict[str, float]:
        """Seconds each app and site gained in the view over the last ``window_s`` of wall time."""
        self._usage_history.append((now, self.last_usage))
        while len(self._usage_history) > 2 and now - self._usage_history[0][0] > window_s:
            self._usage_history.popleft()
        old, new = self._usage_history[0][1], self._usage_history[-1][1]
        if old is None or new is None:
            return {}
        out: dict[str, float] = {}
        for source_old, source_new in ((old.apps, new.apps), (old.sites, new.sites)):
            for name, (seconds, _) in source_new.items():
                out[name] = max(0.0, seconds - source_old.get(name, (0.0, 0))[0])
        return out

    def watch(self, simulator: Child, show: Callable[[Snapshot], None]) -> Snapshot:
        """Refresh the dashboard until the simulator is done and the consumers caught up (or drain_s)."""
        drain_since: float | None = None
        snap = self.snapshot("starting")
        while True:
            phase = "simulating" if simulator.alive() else "draining"
            snap = self.snapshot(phase)
            show(snap)
            if not simulator.alive():
                drain_since = drain_since or time.monotonic()
                if self._drained(snap, time.monotonic() - drain_since):
                    break
            time.sleep(self.options.refresh_s)
        if simulator.proc.returncode not in (0, None):
            self.notes.append(
                f"the simulator exited with {simulator.proc.returncode}: {simulator.log}"
            )
        return snap

    def _drained(self, snap: Snapshot, waited_s: float) -> bool:
        """The sinks have read everything (twice in a row, after the workers had a few seconds), or timeout.

        The workers' own group is not waited for: it commits offsets only with its snapshots, and the live
        collector district keeps it busy anyway.
        """
        sinks = [g for g in snap.lag if "sink" in g.group]
        caught_up = bool(sinks) and all(g.offsets == 0 for g in sinks) and waited_s >= 5
        self._caught_up_in_a_row = self._caught_up_in_a_row + 1 if caught_up else 0
        return self._caught_up_in_a_row >= 2 or waited_s > self.options.drain_s

    # ------------------------------------------------------------------------------------------ end
    def finish(self, last: Snapshot) -> Path | None:
        """Write the report from the analysts' view (read before the sink stops)."""
        rows = probe.usage_view(self.settings.usage_read_port, dt.datetime.now(dt.UTC).date())
        totals = probe.usage_totals(rows) if rows is not None else self.last_usage
        if totals is None:
            self.notes.append("the analysts' view never answered: no report")
            return None
        if self.sim_start_wall:
            self.readings.append(
                Reading(last.sim_ms or 0, {a: v[0] for a, v in totals.apps.items()})
            )
        o = self.options
        summary = {
            "simulated": f"{o.day_hours:g} h school day in {o.minutes:g} min (×{o.speed:.0f}), "
            f"{o.districts} districts by the simulator + 1 live through the collector",
            "events": ", ".join(f"{k} {v:,.0f}" for k, v in last.counts.items() if v is not None),
            "analysts' view": f"{totals.seconds / 3600:,.1f} h in cells of ≥{self.settings.k_anonymity} students",
            "written": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        return write_report(
            o.report_path,
            totals,
            self.readings,
            k_anonymity=self.settings.k_anonymity,
            summary=summary,
            rows=rows,
            catalog=load_catalog(SAMPLE_CATALOG),
        )

    def stop(self) -> None:
        """Stop every child, the fleet, and the stack if this demo started it."""
        if self.fleet is not None and self.fleet.is_alive():
            self.fleet.stop()
            self.fleet.join(timeout=5)
        if self.supervisor is not None:
            stopped = self.supervisor.stop_all()
            if stopped:
                self.say(f"stopped {', '.join(stopped)}")
        if self.started_stack:
            stopped = local_stack.down(self.data_root)
            self.say(f"stopped the stack this demo started: {', '.join(stopped)}")
            self.started_stack = False


def where_the_data_is(s: Settings, options: DemoOptions, report: Path | None) -> str:
    """The summary printed at the end: where each kind of data went and how to read it."""
    day = dt.datetime.now(dt.UTC).date().isoformat()
    lines = ["", "[bold]Where the data is[/bold]"]
    if options.start_stack:
        root = Path(s.data_dir)
        lines += [
            f"  the demo's stack is stopped; its data stays in {root} until the next demo",
            f"  usage rollups (analysts' view): {s.clickhouse_url}, database {s.clickhouse_database}",
            f"    CLICKHOUSE_URL={s.clickhouse_url} csync usage --from {day} --to {day}",
            f"  presence (teacher view): Redis append-only file in {root / 'redis'} "
            f"(keys {s.key_prefix}:presence:*, {s.key_prefix}:class:*)",
            f"  Kafka log: {root / 'kafka' / 'data'} ({s.topic_activity}, {s.topic_roster}, "
            f"{s.topic_dlq})",
        ]
    else:
        lines += [
            f"  presence (teacher view): {s.redis_url} keys {s.key_prefix}:presence:*",
            f"  usage rollups: {s.clickhouse_url}, database {s.clickhouse_database}",
            f"  Kafka {s.kafka_bootstrap}: {s.topic_activity}, {s.topic_roster}, {s.topic_dlq}",
        ]
    lines += [
        f"  logs: {options.demo_dir / 'logs'}   last dashboard: {options.demo_dir / 'dashboard.txt'}",
        f"  report: {report or '(not written)'}",
    ]
    return "\n".join(lines)


def run_demo(
    settings: Settings, options: DemoOptions, console: Console | None = None
) -> DemoResult:
    """Run the demo end to end; whatever happens, stop what it started."""
    previous_handlers = raise_on_signals()
    options.demo_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(settings, options)
    console = console or Console()
    text_path = options.demo_dir / "dashboard.txt"
    result = DemoResult(None, "", 0, 0, 0.0, False)

    def record(snap: Snapshot) -> None:
        result.snapshots += 1
        result.max_online = max(result.max_online, sum((snap.online or {}).values()))
        if snap.usage is not None:
            result.max_view_seconds = max(result.max_view_seconds, snap.usage.seconds)
        result.roster_seen = result.roster_seen or any(
            r.get("online") and r.get("name") for r in snap.roster or []
        )
        if options.headless or result.snapshots % 5 == 0:
            result.dashboard_text = render_text(snap, width=200)
            text_path.write_text(result.dashboard_text)
            if (
                snap.elapsed_s >= options.minutes * 30
                and not (options.demo_dir / "dashboard-mid.txt").exists()
            ):
                (options.demo_dir / "dashboard-mid.txt").write_text(result.dashboard_text)

    try:
        (options.demo_dir / "dashboard-mid.txt").unlink(missing_ok=True)
        demo.prepare()
        demo.start_pipeline()
        simulator = demo.start_simulator()
        if options.headless:
            last = demo.watch(simulator, record)
        else:
            with Live(console=console, refresh_per_second=2, transient=False) as live:

                def show(snap: Snapshot) -> None:
                    record(snap)
                    live.update(render(snap))

                last = demo.watch(simulator, show)
        result.report = demo.finish(last)
        result.dashboard_text = render_text(last, width=200)
        text_path.write_text(result.dashboard_text)
    finally:
        demo.stop()
        restore_signals(previous_handlers)
        result.pids = list(demo.supervisor.started) if demo.supervisor else []
        result.notes = demo.notes
    console.print(where_the_data_is(demo.settings, options, result.report))
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    return result
