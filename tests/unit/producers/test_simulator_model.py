"""The simulator's model: deterministic, valid on the wire, perturbations as configured."""

from __future__ import annotations

from collections import Counter

import orjson

from producers.simulator_model import (
    APPS,
    SITES,
    InvalidEvent,
    SimulationConfig,
    build_population,
    generate,
    generate_relative,
    shift_items,
    span_of,
    valid_events,
)
from producers.simulator_wire import wire_bytes, wire_object
from producers.truth import TruthParams, ground_truth
from schemas.decoder import decode_record
from schemas.event import ActivityEvent

START = 1_764_403_200_000  # 2025-11-29T08:00:00Z
NOW = START + 3_600_000


def test_catalogue_size() -> None:
    assert len(APPS) >= 30
    assert len(SITES) >= 50


def test_same_seed_same_items_other_seed_other_items() -> None:
    config = SimulationConfig(seed=3, dup_rate=0.05, reorder_rate=0.05, invalid_rate=0.02)
    assert generate(config, START, 2000) == generate(config, START, 2000)
    other = SimulationConfig(seed=4, dup_rate=0.05, reorder_rate=0.05, invalid_rate=0.02)
    assert generate(other, START, 2000) != generate(config, START, 2000)


def test_population_has_second_devices_classes_and_names() -> None:
    students = build_population(SimulationConfig(districts=2))
    assert {s.district_id for s in students} == {"d-001", "d-002"}
    assert any(len(s.devices) == 2 for s in students)
    assert all(s.classes and " " in s.name for s in students)
    assert len({s.student_id for s in students}) == len(students)


def test_wire_objects_decode_back_to_the_events_and_invalid_ones_are_rejected() -> None:
    items = generate(SimulationConfig(seed=1, invalid_rate=0.05), START, 5000)
    kinds: Counter[str] = Counter()
    for item in items:
        (outcome,) = decode_record(orjson.dumps(wire_object(item)), NOW)
        if isinstance(item, InvalidEvent):
            assert outcome.rejection is not None
            assert outcome.rejection.reason == item.reason
        else:
            assert outcome.event == item
            kinds[item.kind] += 1
    assert set(kinds) == {"app_focus", "heartbeat", "idle", "logout"} or set(kinds) >= {
        "app_focus",
        "heartbeat",
        "idle",
    }
    assert kinds["heartbeat"] > kinds["app_focus"]
    web = [i for i in items if isinstance(i, ActivityEvent) and i.app == "web"]
    assert web and all("url" in wire_object(i) for i in web)


def test_heartbeats_come_about_every_ten_seconds_per_device() -> None:
    events = valid_events(generate(SimulationConfig(seed=2), START, 3000))
    by_device: dict[str, list[int]] = {}
    for e in events:
        by_device.setdefault(e.device_id, []).append(e.ts)
    gaps = [b - a for ts in by_device.values() for a, b in zip(ts, ts[1:], strict=False)]
    assert sorted(gaps)[len(gaps) // 2] in range(9_500, 10_501)


def test_duplicates_and_reordering_stay_within_the_lateness() -> None:
    config = SimulationConfig(seed=5, dup_rate=0.05, reorder_rate=0.1)
    items = generate(config, START, 20_000)
    events = valid_events(items)
    truth = ground_truth(events, TruthParams(), NOW)
    ids = Counter((e.device_id, e.event_id) for e in events)
    assert truth.duplicates == sum(n - 1 for n in ids.values()) > 0
    assert truth.late_events == 0
    in_order = sorted(set(events), key=lambda e: (e.device_id, e.ts))
    assert events != in_order  # really out of order somewhere
    assert ground_truth(in_order, TruthParams(), NOW).cells == truth.cells


def test_a_reordered_event_is_held_at_most_half_the_lateness() -> None:
    """A held event reaches the stream before any event more than half the lateness newer than it.

    Unbounded, an ``idle`` held until its device's next event (minutes later) arrived long after
    the device went quiet, where the pipeline legitimately closes the device's last interval.
    """
    config = SimulationConfig(seed=5, reorder_rate=0.2, idle_prob=0.05)
    hold_ms = config.allowed_lateness_s * 1000 // 2
    newest = 0
    delivered_late = held_long = 0
    for event in valid_events(generate(config, START, 20_000)):
        assert event.ts + hold_ms >= newest, (event, newest)
        if event.ts < newest:
            delivered_late += 1
            held_long += event.ts + hold_ms // 2 < newest
        newest = max(newest, event.ts)
    assert delivered_late > 1000  # the bound holds while plenty is reordered,
    assert held_long > 0  # some for longer than a heartbeat interval


def test_shifted_relative_items_equal_items_generated_at_the_start() -> None:
    config = SimulationConfig(
        seed=5, classes_per_school=2, dup_rate=0.05, reorder_rate=0.1, invalid_rate=0.05
    )
    start = 1_764_403_200_000
    relative = generate_relative(config, build_population(config), 3000)
    assert shift_items(relative, start) == generate(config, start, 3000)
    assert span_of(relative) == max(i.ts for i in relative if isinstance(i, ActivityEvent)) + 1000


def test_wire_bytes_are_orjson_of_the_wire_objects_for_every_shape() -> None:
    config = SimulationConfig(seed=7, dup_rate=0.02, reorder_rate=0.05, invalid_rate=0.05)
    items = generate(config, START, 20_000)
    shapes = Counter(
        "invalid" if isinstance(i, InvalidEvent)
        else "bare" if not i.app
        else "web" if i.app == "web"
        else "app+sub" if i.sub_app
        else "app"
        for i in items
    )  # fmt: skip
    assert set(shapes) == {"invalid", "bare", "web", "app+sub", "app"}
    assert wire_bytes(items) == [orjson.dumps(wire_object(i)) for i in items]


def test_wire_bytes_escape_what_needs_escaping() -> None:
    """A string the formatting path cannot hold (quote, backslash, control character, as a
    population other than the model's may have) gives orjson's bytes, still valid JSON."""
    plain = generate(SimulationConfig(seed=1), START, 50)
    for odd in ('a"b', "a\\b", "a\nb", "tab\there"):
        event = ActivityEvent(odd, "heartbeat", START, "d-001", "s-1", "cb-1", "docs", odd)
        items = [*plain, event]
        encoded = wire_bytes(items)
        assert encoded == [orjson.dumps(wire_object(i)) for i in items]
        assert orjson.loads(encoded[-1])["event_id"] == odd
