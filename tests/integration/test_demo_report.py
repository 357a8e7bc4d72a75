"""The pure parts of ``make demo`` and ``make bench``: the report's day profile and chart, the dashboard text,
and the bench runner's parsing and table (no service is used)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from demo.dashboard import ProcessRow, Snapshot, render_text
from demo.probe import GroupLag, UsageTotals, lag_of, usage_totals
from demo.report import Reading, day_profile, svg_chart, write_report

ROOT = Path(__file__).resolve().parents[2]


def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


def test_day_profile_bins_growth_of_the_view_and_never_goes_negative() -> None:
    readings = [
        Reading(0, {"docs": 0.0}),
        Reading(1000, {"docs": 60.0, "web": 10.0}),
        Reading(2000, {"docs": 90.0, "web": 5.0}),  # web fell (a cell left the view): not negative
        Reading(3000, {"docs": 90.0, "web": 50.0, "zoom": 7.0}),
    ]
    profile = day_profile(readings, slices=3, top=2)
    assert list(profile.series) == ["docs", "web", "other"]
    assert profile.series["docs"] == [60.0, 30.0, 0.0]
    assert profile.series["web"] == [10.0, 0.0, 45.0]
    assert profile.series["other"] == [0.0, 0.0, 7.0]
    assert all(v >= 0 for values in profile.series.values() for v in values)


def test_chart_has_a_bar_per_slice_and_app_and_says_when_there_is_no_data() -> None:
    profile = day_profile([Reading(0, {"a": 0.0}), Reading(10, {"a": 3600.0})], slices=2)
    svg = svg_chart(profile)
    assert svg.startswith("<svg") and svg.count('<rect x="') >= 2
    assert "<svg" not in svg_chart(day_profile([Reading(0, {"a": 1.0})]))


def test_report_is_self_contained_and_lists_top_apps_and_sites(tmp_path: Path) -> None:
    rows = [
        {"day": "2026-01-05", "app": "docs", "sub_app": "essay", "active_seconds": 7200.0, "students": 12},
        {"day": "2026-01-05", "app": "web", "sub_app": "wikipedia.org", "active_seconds": 3600.0, "students": 11},
    ]  # fmt: skip
    totals = usage_totals(rows)
    assert totals.apps["docs"] == (7200.0, 12) and totals.sites["wikipedia.org"] == (3600.0, 11)
    path = write_report(
        tmp_path / "r" / "index.html",
        totals,
        [Reading(0, {}), Reading(60_000, {"docs": 7200.0, "web": 3600.0})],
        k_anonymity=10,
        summary={"simulated": "test"},
    )
    page = path.read_text()
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "docs" in page and "wikipedia.org" in page and "2.00" in page


def test_dashboard_text_shows_every_panel() -> None:
    snap = Snapshot(
        elapsed_s=10, total_s=60, sim_ms=1_700_000_000_000, speed=100, phase="simulating",
        rates={"produced": 5000.0}, counts={"produced": 50_000.0}, lag=[GroupLag("csync-worker", 12, 0.5, "OK")],
        dlq={"bad_url": 3.0}, online={"d-001": 42}, usage=UsageTotals({"docs": (3600.0, 11)}, {}),
        recent={"docs": 120.0}, class_id="c-1",
        roster=[{"name": "Ada Lovelace", "online": True, "sub_app": "essay"}],
        processes=[ProcessRow("worker-1", 123, 6066, True, "w.log")],
    )  # fmt: skip
    text = render_text(snap)
    for expected in (
        "5,000/s",
        "worker",
        "bad_url",
        "d-001",
        "42",
        "docs",
        "Ada Lovelace",
        "essay",
    ):
        assert expected in text, expected


def test_lag_of_sums_offsets_and_takes_the_worst_time_lag() -> None:
    samples = {
        "csync_lag_offsets": [({"group": "g", "partition": "0"}, 5.0), ({"group": "g", "partition": "1"}, 7.0)],
        "csync_lag_seconds": [({"group": "g", "partition": "0"}, 1.5), ({"group": "g", "partition": "1"}, 0.5)],
        "csync_lag_group_status": [({"group": "g", "status": "OK"}, 0.0), ({"group": "g", "status": "WARN"}, 1.0)],
    }  # fmt: skip
    assert lag_of(samples) == [GroupLag("g", 12, 1.5, "WARN")]


def test_bench_runner_parses_named_lines_and_never_invents_a_number() -> None:
    module = run_all()
    lines = module.parse_results(
        "noise\nRESULT name=envelopes_1w ours_events_per_s=60 baseline_events_per_s=100 ratio=0.6\n"
        "RESULT decode_events_per_s=30 baseline_events_per_s=100 ratio=0.3\n"
    )
    assert lines[0]["envelopes_1w.ours_events_per_s"] == 60.0
    assert module.median_lines([[{"a": 1.0}], [{"a": 9.0}], [{"a": 2.0}]]) == [{"a": 2.0}]
    outcomes = {
        "worker": module.Outcome(lines=lines, runs=1),
        "decode": module.Outcome(problem="exit 1: boom"),
    }
    rows = "\n".join(module.table(outcomes, cores=2))
    assert "| 60/s | 100/s | 0.60× | ≥ 0.6× | meets |" in rows
    assert "decode: exit 1: boom" in rows
    assert "not run" in rows  # sinks, presence … were not in the outcomes
    assert "2 cores" in rows
