"""Reading a OneRoster 1.1 export: students only, names and classes only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from producers.roster_loader import (
    RosterLoadError,
    plan_load,
    read_oneroster,
    write_oneroster,
)
from producers.simulator_model import SimulationConfig, build_population
from schemas.roster import RosterRecord

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "oneroster"


def test_reads_students_only_with_name_and_active_classes() -> None:
    records, skipped = read_oneroster(FIXTURE)
    assert records == {
        "stu-001": RosterRecord("Ada Lovelace", ("c-101", "c-205")),
        "stu-002": RosterRecord("Grace Hopper", ("c-101",)),
        "stu-003": RosterRecord("Alan Turing", ()),
    }
    assert len(skipped) == 1 and "stu 006" in skipped[0]
    stored = repr(records)
    for never in ("Katherine", "Milbanke", "@", "555", "Augusta", "1001"):
        assert never not in stored


def test_plan_upserts_changes_and_tombstones_departures() -> None:
    previous = {
        "stu-001": RosterRecord("Ada Lovelace", ("c-101", "c-205")),
        "stu-002": RosterRecord("Grace Hopper", ("c-999",)),
        "stu-009": RosterRecord("Left School", ("c-101",)),
    }
    current, _ = read_oneroster(FIXTURE)
    plan = plan_load(current, previous)
    assert set(plan.upserts) == {"stu-002", "stu-003"}
    assert plan.deletes == ["stu-009"]


def test_missing_file_or_column_is_an_error(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "x")
    (tmp_path / "x" / "classes.csv").unlink()
    with pytest.raises(RosterLoadError, match="missing"):
        read_oneroster(tmp_path / "x")
    (tmp_path / "x" / "classes.csv").write_text("id,title\n")
    with pytest.raises(RosterLoadError, match="sourcedId"):
        read_oneroster(tmp_path / "x")


def test_simulator_export_reads_back_as_its_students(tmp_path: Path) -> None:
    students = build_population(SimulationConfig(seed=2))
    write_oneroster(tmp_path, students)
    records, skipped = read_oneroster(tmp_path)
    assert skipped == []
    assert records == {s.student_id: s.roster_record for s in students}
