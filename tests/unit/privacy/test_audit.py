"""The audit log: append-only JSON lines, size rotation keeping N files, hash chain, no student data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from privacy.audit import AuditError, AuditLog, check_entry


def test_append_writes_one_json_line_with_who_action_target_when(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    now = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
    log.append("ops", "purge", "district:d1", detail={"redis_keys": 3}, now=now)
    lines = (tmp_path / "audit.log").read_bytes().splitlines()
    assert len(lines) == 1
    entry = orjson.loads(lines[0])
    assert entry["when"] == "2026-03-01T12:00:00.123Z"
    assert (entry["who"], entry["action"], entry["target"]) == ("ops", "purge", "district:d1")
    assert entry["detail"] == {"redis_keys": 3}
    assert entry["status"] == "ok"


def test_appends_accumulate_and_tail_returns_the_last_ones(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    for i in range(5):
        log.append("t1", "teacher.presence", f"c-{i}", status="200")
    assert [e["target"] for e in log.tail(2)] == ["c-3", "c-4"]
    assert len(list(log.entries())) == 5


def test_rotation_by_size_keeps_n_files_and_tail_spans_them(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=400, keep=2)
    for i in range(40):
        log.append("ops", "purge", f"district:d{i:02d}")
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    for p in log.files():
        assert p.stat().st_size <= 400
    kept = [e["target"] for e in log.entries()]
    assert kept[-1] == "district:d39"
    assert kept == sorted(kept)  # oldest first, nothing reordered
    assert len(kept) < 40  # the oldest rotated away
    tail = log.tail(len(kept))
    assert [e["target"] for e in tail] == kept


def test_hash_chain_detects_an_edited_line(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=500, keep=3)
    for i in range(12):
        log.append("ops", "purge", f"district:d{i}")
    assert log.verify_chain() == len(list(log.entries()))
    current = tmp_path / "audit.log"
    lines = current.read_bytes().splitlines()
    assert len(lines) >= 2
    lines[0] = lines[0].replace(b"purge", b"purgX")
    current.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(AuditError, match="chain broken"):
        log.verify_chain()


def test_log_file_is_private_to_its_owner(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.append("ops", "purge", "district:d1")
    assert (tmp_path / "audit.log").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "detail",
    [
        {"student_id": "s1"},
        {"name": "Ada"},
        {"sub_app": "math"},
        {"device_id": "x"},
        {"counts": {"nested": 1}},
        {"note": "x" * 201},
        {"email": "a@b.c"},
    ],
)
def test_student_data_is_refused(tmp_path: Path, detail: dict[str, object]) -> None:
    log = AuditLog(tmp_path / "audit.log")
    with pytest.raises(AuditError):
        log.append("ops", "purge", "district:d1", detail=detail)
    assert not (tmp_path / "audit.log").exists()


def test_counts_and_short_labels_are_allowed() -> None:
    check_entry("ops", "purge", "district:d1", "ok", {"roster_tombstones": 4, "store": "redis"})
    with pytest.raises(AuditError):
        check_entry("", "purge", "d1", "ok", {})
