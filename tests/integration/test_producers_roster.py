"""Loading a OneRoster export into the real compacted topic, then loading a changed one."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from csync.settings import Settings
from producers.roster_loader import load_roster
from schemas.roster import RosterRecord, decode_roster
from tests.integration.test_producers_simulator import read_all

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oneroster"


@pytest.mark.kafka
async def test_load_then_reload_upserts_changes_and_tombstones_leavers(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    first = await load_roster(kafka_settings, FIXTURE, "d-7")
    assert set(first.upserts) == {"stu-001", "stu-002", "stu-003"}
    assert first.deletes == []

    export = tmp_path / "export"
    shutil.copytree(FIXTURE, export)
    users = list(csv.DictReader((export / "users.csv").open()))
    with (export / "users.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(users[0]))
        writer.writeheader()
        writer.writerows(u for u in users if u["sourcedId"] != "stu-003")

    again = await load_roster(kafka_settings, export, "d-7")
    assert again.upserts == {}
    assert again.deletes == ["stu-003"]

    records = await read_all(kafka_settings, kafka_settings.topic_roster)
    latest = {key: value for _, key, value, _ in records}
    assert latest[b"d-7:stu-003"] is None  # tombstone
    assert decode_roster(latest[b"d-7:stu-001"]) == RosterRecord("Ada Lovelace", ("c-101", "c-205"))
    assert len(records) == 4  # 3 records, 1 tombstone: nothing unchanged was sent again
    assert not any(b"Katherine" in (v or b"") for _, _, v, _ in records)
