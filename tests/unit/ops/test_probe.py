"""The probe's reserved district: no real district can take it, and the worker counts no usage for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from csync.settings import Settings
from ops.probe import probe_event
from privacy.teacher_tokens import issue_token
from producers.collector import add_token
from producers.roster_loader import RosterLoadError, load_roster
from schemas.decoder import Limits, decode_record
from schemas.probe import PROBE_DISTRICT, ReservedDistrictError, check_real_district
from streams.batch_log import Intent
from streams.partition import Params, new_state, process_batch
from streams.usage import UsageRules

NOW = 1_800_000_000_000
PARAMS = Params(1, 60_000, UsageRules(close_after_ms=1000), Limits(), "act")


def test_probe_event_is_a_valid_contract_event_of_the_reserved_district() -> None:
    key, value, sub_app = probe_event("r1", 7, NOW)
    [outcome] = decode_record(value, NOW, Limits())
    assert outcome.event is not None and outcome.event.district_id == PROBE_DISTRICT
    assert outcome.event.sub_app == sub_app and key == f"{PROBE_DISTRICT}:probe-student".encode()
    assert probe_event("r1", 8, NOW)[2] != sub_app  # each probe is a visible change


@pytest.mark.parametrize("district", [PROBE_DISTRICT, f"{PROBE_DISTRICT}-2"])
def test_no_token_can_be_made_for_the_probe_district(tmp_path: Path, district: str) -> None:
    with pytest.raises(ReservedDistrictError):
        check_real_district(district)
    with pytest.raises(ReservedDistrictError):
        add_token(tmp_path / "collector.json", "secret-token", district)
    with pytest.raises(ReservedDistrictError):
        issue_token(tmp_path / "teachers.json", "t-1", district, ["c-1"])
    assert not (tmp_path / "collector.json").exists() and not (tmp_path / "teachers.json").exists()
    check_real_district("d-001")  # a real id passes


def _batch(values: list[bytes], now: int, first: int) -> tuple[list, Intent]:  # type: ignore[type-arg]
    records = [(first + i, None, v, ()) for i, v in enumerate(values)]
    return records, Intent(0, first, first + len(values) - 1, 0, -1, now, True, 0)


def test_worker_keeps_probe_presence_and_attributes_no_usage() -> None:
    real = [
        orjson.dumps({"v": 1, "event_id": f"r{i}", "kind": "app_focus", "ts": NOW + i * 5000,
                      "district_id": "d-1", "student_id": "s-1", "device_id": "dev", "app": "docs"})
        for i in range(3)
    ]  # fmt: skip
    probes = [probe_event("r", i, NOW + i * 5000)[1] for i in range(3)]
    state = new_state(0, PARAMS)
    records, intent = _batch(real + probes, NOW + 20_000, 0)
    out = process_batch(state, records, [], intent, PARAMS)
    assert {c.key for c in out.presence} >= {b"d-1:s-1", f"{PROBE_DISTRICT}:probe-student".encode()}
    out2 = process_batch(state, [], [], Intent(0, 6, 5, 0, -1, NOW + 60_000, True, 1), PARAMS)
    intervals = out.intervals + out2.intervals
    assert intervals and all(key[0] == "d-1" for key, *_ in intervals)


def test_no_roster_can_be_loaded_for_the_probe_district(tmp_path: Path) -> None:
    """Refused before any Kafka client exists (the settings point nowhere)."""
    settings = Settings.from_env(env={}, kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(RosterLoadError, match="reserved for the end-to-end probe"):
        asyncio.run(load_roster(settings, tmp_path, PROBE_DISTRICT))
