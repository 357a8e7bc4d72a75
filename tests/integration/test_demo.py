"""``make demo`` end to end, short and headless: every pipeline process on the real services, then the report.

The demo runs against the session's Kafka and Redis with this test's own topics, groups, key prefix, database
and chDB folder; the dashboard goes to a file instead of a terminal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from csync.settings import Settings
from csync.stack import pid_alive
from demo.orchestrate import DemoOptions, run_demo

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]


@pytest.mark.timeout(420)
def test_short_demo_shows_presence_and_usage_and_writes_the_report(
    make_settings: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    settings = make_settings(
        # The demo's lag monitor watches exactly this test's groups (other tests' groups share the broker).
        worker_group=f"csync-{unique}-worker",
        sink_group_redis=f"csync-{unique}-sink-redis",
        sink_group_clickhouse=f"csync-{unique}-sink-clickhouse",
        lag_group_prefix=f"csync-{unique}-",
        # Its own chDB folder: the ClickHouse sink child process owns it, not this test process.
        clickhouse_url=f"chdb://{tmp_path / 'demo-chdb'}",
    )
    options = DemoOptions(
        minutes=0.5,
        day_hours=1.0,
        districts=2,
        schools=2,
        workers=1,
        headless=True,
        start_stack=False,
        drain_s=15.0,
        demo_dir=tmp_path / "demo",
        report_path=tmp_path / "demo-report" / "index.html",
    )
    output = Console(file=open(os.devnull, "w"), width=200)  # noqa: SIM115 - closed with the console

    result = run_demo(settings, options, console=output)

    # Presence reached Redis and the teacher API (names from the OneRoster load, students online).
    assert result.max_online > 0, result.dashboard_text
    assert result.roster_seen, result.dashboard_text
    # Usage reached the analysts' view (cells of at least K_ANONYMITY students).
    assert result.max_view_seconds > 0, result.dashboard_text
    dashboard = (options.demo_dir / "dashboard.txt").read_text()
    assert "students online" in dashboard and "teacher view" in dashboard
    # The report: top apps from the view and an inline SVG chart with bars.
    assert result.report == options.report_path
    page = options.report_path.read_text()
    assert "<svg" in page and page.count("<rect") > 10
    assert (
        "no cell with at least K students"
        not in page.split("Top apps by time")[1].split("</table>")[0]
    )
    # Nothing is left running, and the pid file is gone.
    assert result.pids
    assert not [pid for pid in result.pids if pid_alive(pid)]
    assert not (options.demo_dir / "pids.json").exists()
