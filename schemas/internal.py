"""Formats of the internal topics between the workers and the sinks (not part of the public contract).

Presence changes (topic ``Settings.topic_presence``, compacted, key ``{district_id}:{student_id}``): one JSON
object per change of what a teacher sees, or of the student's roster entry.

Usage partials (topic ``Settings.topic_usage_cells``): JSON ``{"src": [partition, first_offset, last_offset],
"rows": [[minute_epoch_s, app, sub_app, student_token, active_ms], ...]}``. Rows are already de-identified:
``student_token`` is a keyed hash under a daily key that is destroyed after the day closes; no district, school,
student or device identifier is in this topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class InternalFormatError(ValueError):
    """An internal record does not have the shape this module writes; a bug, never user input."""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """What the Redis sink writes for one student (CONTRACT §4).

    ``deleted`` means the student left the roster (tombstone) or was purged: the sink deletes the presence hash
    and removes the student from ``classes_remove``. Otherwise the sink writes the hash (unless Redis already
    holds a newer ``ts``), adds the student to ``classes_add`` and removes them from ``classes_remove``.
    """

    district_id: str
    student_id: str
    name: str
    online: bool
    app: str
    sub_app: str
    ts: int
    classes_add: tuple[str, ...] = ()
    classes_remove: tuple[str, ...] = ()
    deleted: bool = False

    @property
    def key(self) -> bytes:
        return f"{self.district_id}:{self.student_id}".encode()

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "district_id": self.district_id,
                "student_id": self.student_id,
                "name": self.name,
                "online": self.online,
                "app": self.app,
                "sub_app": self.sub_app,
                "ts": self.ts,
                "classes_add": list(self.classes_add),
                "classes_remove": list(self.classes_remove),
                "deleted": self.deleted,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> PresenceChange:
        try:
            obj: dict[str, Any] = orjson.loads(raw)
            return cls(
                district_id=obj["district_id"],
                student_id=obj["student_id"],
                name=obj["name"],
                online=bool(obj["online"]),
                app=obj["app"],
                sub_app=obj["sub_app"],
                ts=int(obj["ts"]),
                classes_add=tuple(obj.get("classes_add", ())),
                classes_remove=tuple(obj.get("classes_remove", ())),
                deleted=bool(obj.get("deleted", False)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InternalFormatError(f"bad presence change: {exc}") from exc


# One de-identified usage row: (minute_epoch_s, app, sub_app, student_token, active_ms)
UsageRow = tuple[int, str, str, int, int]


@dataclass(frozen=True, slots=True)
class UsagePartial:
    """A batch of usage rows produced from the source offsets ``first_offset..last_offset`` of one partition.

    ``src`` identifies the input the rows came from; with deterministic batching it lets the ClickHouse sink
    derive an insert deduplication token.
    """

    partition: int
    first_offset: int
    last_offset: int
    rows: tuple[UsageRow, ...]

    def encode(self) -> bytes:
        return orjson.dumps(
            {"src": [self.partition, self.first_offset, self.last_offset], "rows": self.rows}
        )

    @classmethod
    def decode(cls, raw: bytes) -> UsagePartial:
        try:
            obj: dict[str, Any] = orjson.loads(raw)
            partition, first, last = obj["src"]
            rows = tuple(
                (int(m), str(a), str(s), int(t), int(ms)) for m, a, s, t, ms in obj["rows"]
            )
            return cls(int(partition), int(first), int(last), rows)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InternalFormatError(f"bad usage partial: {exc}") from exc
