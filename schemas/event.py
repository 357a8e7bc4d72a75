"""Device activity event v1 (CONTRACT §2) as a typed value.

An ``ActivityEvent`` is what survives validation and minimisation: only the fields the contract lists, already
checked. ``url`` is never kept; for ``app == "web"`` it has already been turned into ``sub_app``.
"""

from __future__ import annotations

from typing import Final, NamedTuple

APP_FOCUS: Final = "app_focus"
HEARTBEAT: Final = "heartbeat"
IDLE: Final = "idle"
LOGOUT: Final = "logout"
KINDS: Final = frozenset({APP_FOCUS, HEARTBEAT, IDLE, LOGOUT})
# Kinds that put the student "in" an app: they carry `app` and attribute usage time.
ACTIVE_KINDS: Final = frozenset({APP_FOCUS, HEARTBEAT})


class ActivityEvent(NamedTuple):
    """A valid, minimised device activity event. A NamedTuple: cheap to build on the hot path."""

    event_id: str
    kind: str
    ts: int  # epoch ms UTC, event time at the device
    district_id: str
    student_id: str
    device_id: str
    app: str  # "" when absent (idle/logout may omit it)
    sub_app: str  # "" when absent

    @property
    def student_key(self) -> str:
        """The Kafka key of CONTRACT §1: ``{district_id}:{student_id}``."""
        return f"{self.district_id}:{self.student_id}"

    @property
    def device_key(self) -> tuple[str, str, str]:
        """Usage time is attributed per device (CONTRACT §5)."""
        return (self.district_id, self.student_id, self.device_id)
