"""Lag that tells the truth, on the real pipeline under steady load (two workers, both sinks, the exporter,
a real Prometheus with the alert rules):

1. every group keeps up: ``csync lag serve``, ``csync lag`` (the exporter's view) and ``csync lag --watch``
   (its own samples) all say OK, with time lag ≤ 2 s, in every sample — the worker snapshots only every 5 s,
   so this holds only because its commits follow processing; the Grafana status panel shows OK and no lag
   alert is pending; a one-shot ``csync lag`` of its own never guesses (OK or n/a, never STALL or WARN);
2. a hung worker (SIGSTOP) turns the worker group STALL or STOP within the window, the panel shows it and
   ``CsyncConsumerStalledOrStopped`` goes pending; once it is killed the other worker takes over: OK again;
3. a slowed ClickHouse sink (each insert 0.5 s, 8 records a batch: 2 per partition) turns its group WARN; restarted at full
   speed it drains and turns OK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from csync.settings import PROJECT_ROOT, Settings
from ops.lag import Status
from ops.lag_monitor import GroupLag
from ops.lag_view import fetch_exporter_view
from producers.simulator import SendOptions, SimulationConfig
from tests.integration.e2e_harness import Pipeline, pipeline_settings, process_env, say
from tests.integration.test_grafana_dashboard import panel_queries, prometheus, query
from tests.integration.test_lag_serve import lag_serve

pytestmark = [
    pytest.mark.faults,
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.clickhouse,
    pytest.mark.prometheus,
]

SAMPLE_S = 1.0  # the exporter's interval
MIN_SPAN_S = 5.0  # evidence: five of the worker's commit intervals
WINDOW = 6  # samples: the window spans MIN_SPAN_S
HEALTHY_S = 15  # how long every sample must say OK
MAX_TIME_LAG_S = 2.0
# About 300 students whose school day runs 20x faster than real time: ~500 events/s, steady, with no event
# in the future (the simulator paces each event to its simulated time).
LOAD = SimulationConfig(seed=11, districts=2, schools_per_district=3, classes_per_school=6,
                        students_per_class=25)  # fmt: skip
SPEED = 20
STATUS_PANEL = "Consumer group status (Burrow)"
TIME_LAG_PANEL = "Consumer time lag (seconds)"


def csync_lag(settings: Settings, *args: str) -> str:
    """``csync lag ARGS`` as an operator runs it; its stdout (the table)."""
    out = subprocess.run(
        [sys.executable, "-m", "csync.cli", "lag", *args],
        capture_output=True,
        text=True,
        env=process_env(settings),
        cwd=PROJECT_ROOT,
        timeout=120,
        check=True,
    )
    return out.stdout


def table_rows(table: str) -> dict[str, list[str]]:
    """{group: [topic, partitions, lag, max time lag, status]} of the activity/input rows of a table."""
    rows: dict[str, list[str]] = {}
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) == 6 and not line.startswith("n/a"):
            rows.setdefault(cols[0], cols[1:])
    return rows


def groups_of(settings: Settings) -> list[str]:
    return sorted(
        [settings.worker_group, settings.sink_group_redis, settings.sink_group_clickhouse]
    )


def max_time_lag(group: GroupLag) -> float:
    return max((p.time_lag_s or 0.0 for p in group.partitions), default=0.0)


async def exporter(url: str) -> dict[str, GroupLag]:
    view = await asyncio.to_thread(fetch_exporter_view, url)
    return {g.group: g for g in view or []}


async def wait_status(
    pipeline: Pipeline, url: str, group: str, wanted: set[Status], timeout_s: float
) -> dict[str, GroupLag]:
    """Poll the exporter until ``group`` has one of ``wanted``; the view then."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        pipeline.check_alive()
        view = await exporter(url)
        if group in view:
            seen.append(view[group].status.name)
            if view[group].status in wanted:
                return view
        await asyncio.sleep(SAMPLE_S / 2)
    raise AssertionError(f"{group} never became {wanted} in {timeout_s:.0f}s; seen {seen[-30:]}")


def panel(base: str, title: str) -> list[dict[str, Any]]:
    (expr,) = dict(panel_queries())[title]
    result: list[dict[str, Any]] = query(base, expr)["data"]["result"]
    return result


def panel_status(prom: str) -> dict[str, str]:
    """{group: status} as the Grafana status panel shows it."""
    return {r["metric"]["group"]: r["metric"]["status"] for r in panel(prom, STATUS_PANEL)}


def pending_or_firing(base: str, alert_prefix: str) -> list[dict[str, str]]:
    result = query(base, f'ALERTS{{alertname=~"{alert_prefix}.*"}}')["data"]["result"]
    return [r["metric"] for r in result]


async def test_lag_tells_the_truth_under_load(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(
        make_settings(),
        worker_snapshot_s=5,  # the default: commits must not wait for snapshots
        usage_close_after_s=6,
        lag_sample_interval_s=SAMPLE_S,
        lag_window=WINDOW,
        lag_min_span_s=MIN_SPAN_S,
    )
    prefix = f"{settings.key_prefix}-"
    settings = settings.replace(lag_group_prefix=prefix)  # what every `csync lag` below watches
    groups = groups_of(settings)
    assert all(g.startswith(prefix) for g in groups)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    sending: asyncio.Task[Any] | None = None
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=2)
        sending = asyncio.create_task(
            pipeline.simulate(LOAD, SendOptions(duration_s=600, speed=SPEED))
        )
        env = {"LAG_SAMPLE_INTERVAL_S": str(SAMPLE_S), "LAG_MIN_SPAN_S": str(MIN_SPAN_S)}
        with (
            lag_serve(settings, prefix, tmp_path, window=WINDOW, **env) as base,
            prometheus(
                {"lag": base.removeprefix("http://")},
                tmp_path,
                rules=PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml",
            ) as prom,
        ):
            url = f"{base}/metrics"
            await healthy_phase(pipeline, settings, url, prom, groups)
            await stopped_worker_phase(pipeline, settings, url, prom)
            await slowed_sink_phase(pipeline, settings, url, prom)
    finally:
        if sending is not None:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sending
        pipeline.close()


async def healthy_phase(
    pipeline: Pipeline, settings: Settings, url: str, prom: str, groups: list[str]
) -> None:
    # Start-up (recovery, the roster, the first backlog) is over once the load has run for a window and
    # then every group is OK at once.
    async def sending() -> bool:
        return sum((await pipeline.end_offsets(settings.topic_activity)).values()) > 0

    await pipeline.wait_for("the simulator's first events", sending, timeout_s=60)
    await asyncio.sleep(2 * MIN_SPAN_S)
    deadline = time.monotonic() + 120
    while True:
        pipeline.check_alive()
        view = await exporter(url)
        if sorted(view) == groups and all(g.status is Status.OK for g in view.values()):
            break
        assert time.monotonic() < deadline, {g: v.status.name for g, v in view.items()}
        await asyncio.sleep(SAMPLE_S)
    watching = asyncio.create_task(
        asyncio.to_thread(
            csync_lag,
            settings,
            "--no-exporter",
            "--watch",
            "--interval",
            "1",
            "--count",
            str(int(MIN_SPAN_S) + 4),
        )  # fmt: skip
    )
    statuses: dict[str, list[str]] = {g: [] for g in groups}
    time_lags: dict[str, list[float]] = {g: [] for g in groups}
    started = time.monotonic()
    ends_before = sum((await pipeline.end_offsets(settings.topic_activity)).values())
    while time.monotonic() - started < HEALTHY_S:
        pipeline.check_alive()
        view = await exporter(url)
        for g in groups:
            statuses[g].append(view[g].status.name)
            time_lags[g].append(round(max_time_lag(view[g]), 2))
        await asyncio.sleep(SAMPLE_S)
    ends = sum((await pipeline.end_offsets(settings.topic_activity)).values())
    say(f"healthy: activity records/s over the phase: {(ends - ends_before) / HEALTHY_S:.0f}")
    say(f"healthy, exporter statuses: {statuses}")
    say(f"healthy, exporter max time lag per sample (s): {time_lags}")
    assert all(s == "OK" for g in groups for s in statuses[g]), statuses
    assert all(t <= MAX_TIME_LAG_S for g in groups for t in time_lags[g]), time_lags

    # `csync lag`: the exporter's view; --watch: its own samples; a one-shot of its own never guesses.
    table = await asyncio.to_thread(csync_lag, settings, "--exporter", url)
    say(f"healthy, csync lag (the exporter's view):\n{table}")
    assert_all(table, groups, {"OK"})
    watched = (await watching).strip().split("\n\n")[-1]
    say(f"healthy, csync lag --watch (own samples), last table:\n{watched}")
    assert_all(watched, groups, {"OK"})
    one_shot = await asyncio.to_thread(csync_lag, settings, "--no-exporter")
    say(f"healthy, csync lag --no-exporter (two samples 1 s apart):\n{one_shot}")
    assert_all(one_shot, groups, {"OK", "n/a"})

    status_panel = panel_status(prom)
    assert status_panel == dict.fromkeys(groups, "OK"), status_panel
    lag_panel = {r["metric"]["group"]: float(r["value"][1]) for r in panel(prom, TIME_LAG_PANEL)}
    assert sorted(lag_panel) == groups and max(lag_panel.values()) <= MAX_TIME_LAG_S, lag_panel
    assert pending_or_firing(prom, "CsyncConsumer") == []
    health = rule_health(prom)  # every alert rule evaluates against these series without an error
    assert health and all(h == "ok" for h in health.values()), health


def assert_all(table: str, groups: list[str], allowed: set[str]) -> None:
    rows = table_rows(table)
    assert sorted(rows) == groups, table
    for group, (_topic, _parts, _lag, time_lag, status) in rows.items():
        assert status in allowed, table
        assert time_lag == "-" or float(time_lag) <= MAX_TIME_LAG_S, (group, table)


def rule_health(prom: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=5) as resp:  # noqa: S310 - ours
        data = json.loads(resp.read())
    return {
        rule["name"]: rule["health"] for group in data["data"]["groups"] for rule in group["rules"]
    }


async def stopped_worker_phase(pipeline: Pipeline, settings: Settings, url: str, prom: str) -> None:
    hung = pipeline.workers[0]
    hung.popen.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        view = await wait_status(
            pipeline, url, settings.worker_group, {Status.STALL, Status.STOP}, timeout_s=45
        )
        took = time.monotonic() - stopped_at
        table = await asyncio.to_thread(csync_lag, settings, "--exporter", url)
        say(f"worker 0 stopped (SIGSTOP) {took:.1f}s ago, csync lag:\n{table}")
        assert took <= 2 * WINDOW * SAMPLE_S + 3, took  # the window, with slack for a busy box
        assert view[settings.worker_group].status in (Status.STALL, Status.STOP)
        await wait_prometheus(
            prom,
            lambda: any(
                m.get("group") == settings.worker_group
                for m in pending_or_firing(prom, "CsyncConsumerStalledOrStopped")
            ),
            "CsyncConsumerStalledOrStopped pending for the worker group",
        )
        await wait_prometheus(
            prom,
            lambda: panel_status(prom).get(settings.worker_group) in ("STALL", "STOP"),
            "the status panel showing the worker group STALL or STOP",
        )
        say(f"status panel with a stopped worker: {panel_status(prom)}")
    finally:
        pipeline.expected_dead.add(hung.pid)
        hung.kill9()
    # The other worker takes the partitions over (session timeout, recovery) and catches up.
    await wait_status(pipeline, url, settings.worker_group, {Status.OK}, timeout_s=120)
    say(f"worker group OK again {time.monotonic() - stopped_at:.1f}s after the stop")


async def wait_prometheus(prom: str, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"Prometheus never showed {what}"
        await asyncio.sleep(1)


async def slowed_sink_phase(pipeline: Pipeline, settings: Settings, url: str, prom: str) -> None:
    group = settings.sink_group_clickhouse
    assert pipeline.stop_clickhouse_sink() == 0
    pipeline.start_clickhouse_sink(faults="slow_insert_ms=500", sink_max_batch=8)
    slowed_at = time.monotonic()
    view = await wait_status(pipeline, url, group, {Status.WARN}, timeout_s=90)
    table = await asyncio.to_thread(csync_lag, settings, "--exporter", url)
    say(f"ClickHouse sink slowed {time.monotonic() - slowed_at:.1f}s ago, csync lag:\n{table}")
    assert table_rows(table)[group][-1] == "WARN", table
    assert view[group].status is Status.WARN
    # A verdict, not a blip: every partition advances (no STALL) and the lag keeps growing.
    held: list[str] = []
    for _ in range(WINDOW):
        await asyncio.sleep(SAMPLE_S)
        held.append((await exporter(url))[group].status.name)
    assert held == ["WARN"] * WINDOW, held
    await wait_prometheus(
        prom,
        lambda: panel_status(prom).get(group) == "WARN",
        "the status panel showing the ClickHouse sink's group WARN",
    )
    say(f"status panel with a slow sink: {panel_status(prom)}")
    assert pipeline.stop_clickhouse_sink() == 0
    pipeline.start_clickhouse_sink()
    drained_at = time.monotonic()
    await wait_status(pipeline, url, group, {Status.OK}, timeout_s=90)
    table = await asyncio.to_thread(csync_lag, settings, "--exporter", url)
    say(
        f"ClickHouse sink at full speed again, OK after {time.monotonic() - drained_at:.1f}s:\n{table}"
    )
