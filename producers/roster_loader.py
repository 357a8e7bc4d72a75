"""Load a district's OneRoster 1.1 CSV export into ``roster.v1`` (``csync roster load``).

Reads ``users.csv``, ``enrollments.csv`` and ``classes.csv``. Only students are kept (role
``student``, not ``tobedeleted``, enabled); teachers and every other user are never stored, and of
a student only the display name (``givenName familyName``) and their class ids survive. Each
student becomes a record keyed ``{district_id}:{student_id}`` (``student_id`` = the user's
``sourcedId``).

Students that disappeared since the last load get a tombstone. The previous state is read back
from the compacted topic itself (the latest value of every key of this district): no local state
file can be lost or go stale, and a load from another machine sees the same state. Unchanged
students are not produced again.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from csync.kafka_client import kafka_options, producer_options
from csync.settings import Settings
from producers.simulator_model import Student
from schemas.probe import is_probe_district
from schemas.roster import RosterRecord, is_valid_id, make_record, roster_key


class RosterLoadError(ValueError):
    """The export cannot be loaded (missing file or column)."""


@dataclass
class RosterPlan:
    """What a load changes."""

    students: dict[str, RosterRecord]
    upserts: dict[str, RosterRecord] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Students left out, with why (e.g. an id outside the contract's charset)."""


def _rows(folder: Path, name: str, required: set[str]) -> list[dict[str, str]]:
    path = folder / name
    if not path.exists():
        raise RosterLoadError(f"{path} is missing")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise RosterLoadError(f"{path} lacks columns {sorted(missing)}")
        return list(reader)


def _active(row: dict[str, str]) -> bool:
    return row.get("status", "").strip().lower() != "tobedeleted"


def read_oneroster(folder: Path) -> tuple[dict[str, RosterRecord], list[str]]:
    """``{student_id: record}`` of the export's students, and the skipped ones with the reason."""
    users = _rows(folder, "users.csv", {"sourcedId", "role", "givenName", "familyName"})
    enrollments = _rows(folder, "enrollments.csv", {"classSourcedId", "userSourcedId", "role"})
    classes = {
        row["sourcedId"]
        for row in _rows(folder, "classes.csv", {"sourcedId"})
        if _active(row) and is_valid_id(row["sourcedId"])
    }
    names: dict[str, str] = {}
    skipped: list[str] = []
    for row in users:
        enabled = row.get("enabledUser", "true").strip().lower() not in ("false", "0")
        if row["role"].strip().lower() != "student" or not _active(row) or not enabled:
            continue
        student_id = row["sourcedId"].strip()
        if not is_valid_id(student_id):
            skipped.append(f"{student_id!r}: id outside [A-Za-z0-9_.-]{{1,64}}")
            continue
        name = " ".join(p for p in (row["givenName"].strip(), row["familyName"].strip()) if p)
        names[student_id] = name or student_id
    enrolled: dict[str, list[str]] = {s: [] for s in names}
    for row in enrollments:
        student_id = row["userSourcedId"].strip()
        class_id = row["classSourcedId"].strip()
        if (
            row["role"].strip().lower() == "student"
            and _active(row)
            and student_id in enrolled
            and class_id in classes
        ):
            enrolled[student_id].append(class_id)
    records = {s: make_record(names[s], sorted(set(c))) for s, c in enrolled.items()}
    return records, skipped


def plan_load(current: dict[str, RosterRecord], previous: dict[str, RosterRecord]) -> RosterPlan:
    """Upserts for new or changed students, tombstones for students gone since ``previous``."""
    plan = RosterPlan(current)
    plan.upserts = {s: r for s, r in current.items() if previous.get(s) != r}
    plan.deletes = sorted(s for s in previous if s not in current)
    return plan


async def read_previous(
    settings: Settings, district_id: str, partitions: Iterable[int]
) -> dict[str, RosterRecord]:
    """The latest live record of each of the district's keys in the compacted roster topic."""
    from schemas.roster import RosterError, decode_roster

    prefix = f"{district_id}:".encode()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        **kafka_options(settings),
    )
    await consumer.start()
    latest: dict[str, RosterRecord | None] = {}
    try:
        assigned = [TopicPartition(settings.topic_roster, p) for p in sorted(partitions)]
        if not assigned:
            return {}
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        deadline = time.monotonic() + 120
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise RosterLoadError("timed out reading the roster topic")
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    if m.key is None or not m.key.startswith(prefix):
                        continue
                    try:
                        latest[m.key[len(prefix) :].decode()] = decode_roster(m.value)
                    except RosterError:
                        continue  # a bad old record: the new load overwrites it
    finally:
        await consumer.stop()
    return {s: r for s, r in latest.items() if r is not None}


async def load_roster(settings: Settings, folder: Path, district_id: str) -> RosterPlan:
    """Read the export, compare with the topic, produce upserts and tombstones (acknowledged)."""
    if not is_valid_id(district_id):
        raise RosterLoadError(f"district id {district_id!r} is outside [A-Za-z0-9_.-]{{1,64}}")
    if is_probe_district(district_id):
        raise RosterLoadError(f"district id {district_id!r} is reserved for the end-to-end probe")
    current, skipped = read_oneroster(folder)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        **producer_options(settings),
    )
    await producer.start()
    try:
        partitions = await producer.partitions_for(settings.topic_roster)
        plan = plan_load(current, await read_previous(settings, district_id, partitions))
        plan.skipped = skipped
        futures = [
            await producer.send(
                settings.topic_roster, record.encode(), key=roster_key(district_id, student)
            )
            for student, record in plan.upserts.items()
        ]
        futures += [
            await producer.send(settings.topic_roster, None, key=roster_key(district_id, s))
            for s in plan.deletes
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    return plan


def write_oneroster(folder: Path, students: Iterable[Student]) -> None:
    """A OneRoster 1.1-like export of simulated students (synthetic names), for the loader."""
    folder.mkdir(parents=True, exist_ok=True)
    students = list(students)
    with (folder / "users.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sourcedId", "status", "enabledUser", "role", "givenName", "familyName"])
        for s in students:
            given, _, family = s.name.partition(" ")
            writer.writerow([s.student_id, "active", "true", "student", given, family])
    class_ids = sorted({c for s in students for c in s.classes})
    with (folder / "classes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sourcedId", "status", "title"])
        writer.writerows([c, "active", c] for c in class_ids)
    with (folder / "enrollments.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sourcedId", "status", "classSourcedId", "userSourcedId", "role"])
        for s in students:
            for c in s.classes:
                writer.writerow([f"en-{s.student_id}-{c}", "active", c, s.student_id, "student"])
