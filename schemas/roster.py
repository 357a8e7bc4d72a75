"""Roster record of ``roster.v1`` (CONTRACT §3): a student's display name and enrolled classes.

The key is ``{district_id}:{student_id}``; a null value (tombstone) deletes the student. The name is
the only personal field the platform keeps.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

import orjson

# Same charset as the event ids of CONTRACT §2.
_ID_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_NAME_CHARS: Final = 256
MAX_CLASSES: Final = 1000


class RosterError(ValueError):
    """A roster record or key does not follow CONTRACT §3."""


class RosterRecord(NamedTuple):
    """A valid roster record. ``classes`` keeps the given order, without repeats."""

    name: str
    classes: tuple[str, ...]

    def encode(self) -> bytes:
        """The record's JSON value for ``roster.v1``."""
        return orjson.dumps({"name": self.name, "classes": list(self.classes)})


def is_valid_id(value: object) -> bool:
    """True for a string of 1–64 chars of ``[A-Za-z0-9_.-]`` (district, student and class ids)."""
    return type(value) is str and _ID_RE.fullmatch(value) is not None


def make_record(name: str, classes: list[str] | tuple[str, ...]) -> RosterRecord:
    """Validate ``name`` (1–256 chars) and ``classes`` (ids), dropping repeated class ids."""
    if type(name) is not str or not 0 < len(name) <= MAX_NAME_CHARS:
        raise RosterError("name must be a string of 1-256 chars")
    if not isinstance(classes, list | tuple) or len(classes) > MAX_CLASSES:
        raise RosterError("classes must be a list of at most 1000 class ids")
    for class_id in classes:
        if not is_valid_id(class_id):
            raise RosterError(f"class id {class_id!r} must be 1-64 chars of [A-Za-z0-9_.-]")
    return RosterRecord(name, tuple(dict.fromkeys(classes)))


def decode_roster(raw: bytes | None) -> RosterRecord | None:
    """Parse a ``roster.v1`` value; ``None`` for a tombstone. Raises :class:`RosterError`."""
    if raw is None:
        return None
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RosterError(f"not JSON: {exc}") from exc
    if type(obj) is not dict:
        raise RosterError("roster record must be a JSON object")
    if "name" not in obj or "classes" not in obj:
        raise RosterError("roster record needs name and classes")
    return make_record(obj["name"], obj["classes"])


def roster_key(district_id: str, student_id: str) -> bytes:
    """The ``roster.v1`` key ``{district_id}:{student_id}``."""
    if not (is_valid_id(district_id) and is_valid_id(student_id)):
        raise RosterError("district_id and student_id must be 1-64 chars of [A-Za-z0-9_.-]")
    return f"{district_id}:{student_id}".encode()


def parse_roster_key(key: bytes) -> tuple[str, str]:
    """``(district_id, student_id)`` of a ``roster.v1`` key. Raises :class:`RosterError`."""
    district_id, sep, student_id = key.decode("utf-8", "replace").partition(":")
    if not sep or not (is_valid_id(district_id) and is_valid_id(student_id)):
        raise RosterError(f"bad roster key {key!r}")
    return district_id, student_id
