"""The ground truth of usage (CONTRACT §5) and presence (§4) on hand-made sequences."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from producers.truth import (
    PresenceTruth,
    TruthParams,
    ground_truth,
    load_truth,
    save_truth,
)
from schemas.clock import split_minutes as minute_split
from schemas.event import ActivityEvent

T0 = 1_764_374_400_000  # 2025-11-29T00:00:00Z, a minute boundary
PARAMS = TruthParams(max_gap_s=60, allowed_lateness_s=60, presence_timeout_s=60)
_ids = itertools.count()


def ev(
    ts: int,
    kind: str = "heartbeat",
    app: str = "docs",
    sub_app: str = "",
    student: str = "s1",
    device: str = "dev1",
    event_id: str | None = None,
    district: str = "d1",
) -> ActivityEvent:
    eid = event_id if event_id is not None else f"e{next(_ids)}"
    return ActivityEvent(eid, kind, ts, district, student, device, app, sub_app)


def cells_ms(
    events: list[ActivityEvent], params: TruthParams = PARAMS
) -> dict[tuple[int, str, str], int]:
    truth = ground_truth(events, params, now_ms=T0)
    return {key: cell.active_ms for key, cell in truth.cells.items()}


M0 = T0 // 1000


def test_minute_split_cuts_at_utc_minutes() -> None:
    assert list(minute_split(T0 + 50_000, T0 + 130_000)) == [
        (M0, 10_000),
        (M0 + 60, 60_000),
        (M0 + 120, 10_000),
    ]
    assert list(minute_split(T0, T0)) == []


def test_heartbeats_attribute_until_next_event() -> None:
    events = [ev(T0), ev(T0 + 10_000), ev(T0 + 20_000, kind="logout", app="")]
    assert cells_ms(events) == {(M0, "docs", ""): 20_000}


def test_gap_longer_than_max_gap_is_capped() -> None:
    events = [ev(T0, app="docs"), ev(T0 + 300_000, app="math")]
    assert cells_ms(events) == {
        (M0, "docs", ""): 60_000,
        (M0 + 300, "math", ""): 60_000,
    }


def test_idle_and_logout_attribute_nothing_and_end_the_previous_interval() -> None:
    events = [
        ev(T0, kind="app_focus"),
        ev(T0 + 5_000, kind="idle", app=""),
        ev(T0 + 30_000, kind="app_focus"),
        ev(T0 + 40_000, kind="logout", app=""),
    ]
    assert cells_ms(events) == {(M0, "docs", ""): 15_000}


def test_interval_is_split_at_minute_boundaries() -> None:
    events = [ev(T0 + 45_000, kind="app_focus", app="web", sub_app="example.org")]
    assert cells_ms(events) == {
        (M0, "web", "example.org"): 15_000,
        (M0 + 60, "web", "example.org"): 45_000,
    }


def test_duplicate_event_id_counts_once_per_device() -> None:
    first = ev(T0, event_id="same")
    resend = ev(T0, event_id="same")
    other_device = ev(T0 + 1000, event_id="same", device="dev2", app="math")
    truth = ground_truth(
        [first, ev(T0 + 30_000, kind="idle", app=""), resend, other_device], PARAMS, T0
    )
    assert truth.duplicates == 1
    assert {k: c.active_ms for k, c in truth.cells.items()} == {
        (M0, "docs", ""): 30_000,
        (M0, "math", ""): 59_000,
        (M0 + 60, "math", ""): 1_000,
    }


def test_two_devices_of_one_student_count_the_student_once_per_cell() -> None:
    events = [
        ev(T0, device="laptop"),
        ev(T0 + 1000, device="tablet"),
        ev(T0 + 2000, student="s2", device="x"),
    ]
    truth = ground_truth(events, PARAMS, T0)
    cell = truth.cells[(M0, "docs", "")]
    assert cell.active_ms == 60_000 + 59_000 + 58_000
    assert cell.students == {("d1", "s1"), ("d1", "s2")}


def test_reordering_within_allowed_lateness_gives_the_in_order_result() -> None:
    in_order = [
        ev(T0 + i * 10_000, kind="app_focus" if i % 4 == 0 else "heartbeat", app=f"a{i // 4}")
        for i in range(12)
    ]
    in_order.append(ev(T0 + 120_000, kind="logout", app=""))
    expected = ground_truth(in_order, PARAMS, T0)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = list(in_order)
        # swap disjoint neighbour pairs (10 s apart): always within the 60 s lateness
        for i in range(rng.randrange(2), len(shuffled) - 1, 2):
            if rng.random() < 0.5:
                shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
        got = ground_truth(shuffled, PARAMS, T0)
        assert got.late_events == 0
        assert got.cells == expected.cells


def test_truly_late_event_is_dropped_and_is_nobodys_t_next() -> None:
    events = [
        ev(T0, app="docs"),
        ev(T0 + 100_000, app="math"),
        ev(T0 + 30_000, kind="idle", app=""),  # 70 s behind the newest: late
    ]
    truth = ground_truth(events, PARAMS, T0)
    assert truth.late_events == 1
    # Without the late idle, docs runs the full 60 s gap.
    assert {k: c.active_ms for k, c in truth.cells.items()} == {
        (M0, "docs", ""): 60_000,
        (M0 + 60, "math", ""): 20_000,
        (M0 + 120, "math", ""): 40_000,
    }


def test_event_exactly_at_the_lateness_bound_is_not_late() -> None:
    events = [ev(T0 + 60_000), ev(T0, kind="app_focus", app="math")]
    truth = ground_truth(events, PARAMS, T0)
    assert truth.late_events == 0
    assert truth.cells[(M0, "math", "")].active_ms == 60_000


def test_equal_timestamps_keep_arrival_order() -> None:
    events = [ev(T0, app="docs"), ev(T0, app="math"), ev(T0 + 10_000, kind="logout", app="")]
    assert cells_ms(events) == {(M0, "math", ""): 10_000}


def test_presence_greatest_ts_wins_ties_go_to_later_arrival() -> None:
    events = [
        ev(T0 + 10_000, app="math"),
        ev(T0, app="docs"),  # older: never overwrites
        ev(T0 + 10_000, kind="app_focus", app="web", sub_app="example.org"),  # tie: later wins
    ]
    truth = ground_truth(events, PARAMS, now_ms=T0 + 20_000)
    assert truth.presence[("d1", "s1")] == PresenceTruth(
        "d1", "s1", True, "web", "example.org", T0 + 10_000
    )


def test_presence_offline_after_timeout_or_idle() -> None:
    stale = ground_truth([ev(T0)], PARAMS, now_ms=T0 + 60_001)
    assert stale.presence[("d1", "s1")] == PresenceTruth("d1", "s1", False, "", "", T0)
    fresh = ground_truth([ev(T0)], PARAMS, now_ms=T0 + 60_000)
    assert fresh.presence[("d1", "s1")].online
    idle = ground_truth([ev(T0), ev(T0 + 1, kind="idle", app="")], PARAMS, now_ms=T0 + 2)
    assert idle.presence[("d1", "s1")] == PresenceTruth("d1", "s1", False, "", "", T0 + 1)


def test_save_and_load_round_trip_holds_counts_not_identifiers(tmp_path: Path) -> None:
    events = [ev(T0, student="s1"), ev(T0, student="s2", device="d2")]
    truth = ground_truth(events, PARAMS, T0)
    path = tmp_path / "truth.json"
    save_truth(path, truth, PARAMS, T0)
    doc = load_truth(path)
    assert doc["cells"] == [
        {"minute": M0, "app": "docs", "sub_app": "", "active_ms": 120_000, "students": 2}
    ]
    assert [p["student_id"] for p in doc["presence"]] == ["s1", "s2"]
    assert doc["late_events"] == 0
    assert doc["duplicates"] == 0
