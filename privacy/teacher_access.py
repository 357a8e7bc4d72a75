"""What every teacher-facing route shares: who may see which class, when, and the audit of each access.

- :func:`decide` — 401 without a teacher, 403 for any class they do not teach (the same answer whether the
  class exists elsewhere, nowhere, or is not even a valid id), else 200.
- :class:`TeacherContext` — the server's collaborators (Redis, token book, sessions, monitoring hours, audit,
  clock) and the two checks made before anything is read: the access rule, then monitoring hours.
- :func:`read_hashes` — the only way the teacher routes read Redis: SMEMBERS of one class of the teacher's
  own district, then one pipeline of ``HMGET`` of named fields.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from csync.redis_client import AnyRedis
from csync.settings import Settings
from privacy.audit import AuditLog
from privacy.monitoring_hours import LiveHours, MonitoringHours
from privacy.sessions import SessionStore
from privacy.teacher_tokens import Teacher, TokenBook
from schemas.roster import is_valid_id

MONITORING_OFF = "monitoring-off"  # the audit status of a request refused for the hour


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def row_id(key: bytes, class_id: str, student_id: str) -> str:
    """An opaque row id for a student in a class: unlinkable across classes and server restarts."""
    return hmac.new(key, f"{class_id}\x00{student_id}".encode(), hashlib.sha256).hexdigest()[:16]


def text(value: Any) -> str:
    """A Redis reply as text (``None`` → ``""``)."""
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decide(teacher: Teacher | None, class_id: str) -> int:
    """The access rule (pure): 401 without a teacher, 403 unless they teach the class, else 200."""
    if teacher is None:
        return 401
    if not is_valid_id(class_id) or class_id not in teacher.classes:
        return 403
    return 200


async def read_hashes(
    redis: AnyRedis, prefix: str, district_id: str, class_id: str, fields: tuple[str, ...]
) -> tuple[list[str], list[list[Any]]]:
    """The class's members and ``HMGET fields`` of each: SMEMBERS, then one pipeline of HMGETs."""
    members = sorted(
        text(m) for m in await redis.smembers(f"{prefix}:class:{district_id}:{class_id}")
    )
    if not members:
        return [], []
    pipe = redis.pipeline(transaction=False)
    for student in members:
        pipe.hmget(f"{prefix}:presence:{district_id}:{student}", list(fields))
    return members, await pipe.execute()


@dataclass(slots=True)
class TeacherContext:
    """The collaborators of the teacher routes; the caller owns ``redis``."""

    settings: Settings
    redis: AnyRedis
    book: TokenBook
    audit: AuditLog
    hours: MonitoringHours | LiveHours
    sessions: SessionStore
    row_key: bytes
    clock: Callable[[], dt.datetime] = utc_now

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def monitoring_on(self, teacher: Teacher, class_id: str) -> bool:
        """Monitoring hours of the teacher's district (and the class's periods) at this moment."""
        return self.hours.is_open(teacher.district_id, class_id, self.clock())

    def day_start_ms(self, teacher: Teacher) -> int:
        """Local midnight of today in the teacher's district (the "no activity today" line)."""
        return self.hours.of(teacher.district_id).day_start_ms(self.clock())

    async def record(
        self, teacher: Teacher | None, action: str, target: str, status: int | str
    ) -> None:
        """Append an access to the audit log (teacher id, class, status — never student data)."""
        who = f"teacher:{teacher.teacher_id}" if teacher else "anonymous"
        # fsync'd append off the event loop: the request is audited before it is answered.
        await asyncio.to_thread(self.audit.append, who, action, target, status=str(status))

    async def gate(self, teacher: Teacher | None, action: str, class_id: str) -> tuple[int, bool]:
        """``(status, monitoring on)`` of a request for a class, audited: 401/403 before the hour is
        even looked at, so a refused class says nothing about its schedule."""
        status = decide(teacher, class_id)
        target = f"class:{class_id}" if is_valid_id(class_id) else "class:(invalid id)"
        on = status == 200 and teacher is not None and self.monitoring_on(teacher, class_id)
        await self.record(
            teacher, action, target, status if status != 200 or on else MONITORING_OFF
        )
        return status, on
