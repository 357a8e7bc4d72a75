"""The peers' rules (``bench/peers/peer_rules.py``) compute the truth: the benchmark's comparison of the
peers with our worker is only meaningful if they do the same work."""

from __future__ import annotations

from typing import Any

from bench.peers.peer_rules import (
    cells_of,
    device_close,
    device_event,
    presence_update,
    presence_view,
)
from producers.simulator_model import SimulationConfig, generate, valid_events
from producers.truth import TruthParams, ground_truth

PARAMS = TruthParams(max_gap_s=60, allowed_lateness_s=60, presence_timeout_s=60)
START = 1_760_000_000_000


def run_rules(items: list[Any]) -> tuple[dict[str, Any], dict[str, list[int]], int]:
    presence: dict[str, list[Any]] = {}
    devices: dict[tuple[str, str], dict[str, Any]] = {}
    contributions: dict[tuple[int, str, str, str], int] = {}

    def emitter(student: str) -> Any:
        def emit(minute: int, app: str, sub_app: str, ms: int) -> None:
            key = (minute, app, sub_app, student)
            contributions[key] = contributions.get(key, 0) + ms

        return emit

    duplicates = 0
    for ev in valid_events(items):
        student = f"{ev.district_id}:{ev.student_id}"
        new = presence_update(presence.get(student), ev)
        if new is not None:
            presence[student] = new
        key = (student, ev.device_id)
        dev, dup = device_event(devices.get(key), ev, 60_000, 60_000, emitter(student))
        duplicates += dup
        if dev is not None:
            devices[key] = dev
    for (student, _device), dev in devices.items():
        device_close(dev, 60_000, emitter(student))
    return presence, cells_of(contributions), duplicates


def test_peer_rules_equal_the_truth_on_simulated_input() -> None:
    config = SimulationConfig(
        seed=11, districts=2, schools_per_district=1, classes_per_school=2, students_per_class=10,
        classes_per_student=1, dup_rate=0.05, reorder_rate=0.1, invalid_rate=0.02,
    )  # fmt: skip
    items = generate(config, START, 6000)
    now = START + 3_600_000
    truth = ground_truth(valid_events(items), PARAMS, now)
    presence, cells, duplicates = run_rules(items)
    assert duplicates == truth.duplicates > 0
    want_presence = {
        f"{d}:{s}": (p.online, p.app, p.sub_app, p.ts) for (d, s), p in truth.presence.items()
    }
    assert {k: presence_view(v, now, 60_000) for k, v in presence.items()} == want_presence
    want_cells = {
        f"{m}|{a}|{sa}": [c.active_ms, len(c.students)] for (m, a, sa), c in truth.cells.items()
    }
    assert cells == want_cells
    assert len(cells) > 50
