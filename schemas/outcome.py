"""What decoding device activity answers (CONTRACT §2, §2a): the size limits, the stable rejection reasons,
and one outcome per event — a valid minimised event or a rejection.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, NamedTuple

from schemas.event import ActivityEvent

MAX_EVENT_BYTES: Final = 8 * 1024
MAX_ENVELOPE_BYTES: Final = 1024 * 1024
MAX_ENVELOPE_EVENTS: Final = 1000
MAX_URL_CHARS: Final = 2048
MAX_APP_CHARS: Final = 64
MAX_SUB_APP_CHARS: Final = 128
WEB_APP: Final = "web"
SINGLE_EVENT_INDEX: Final = -1
# The fields of CONTRACT §2; everything else is dropped and counted.
CONTRACT_FIELDS: Final = frozenset(
    {
        "v",
        "event_id",
        "kind",
        "ts",
        "district_id",
        "student_id",
        "device_id",
        "app",
        "sub_app",
        "url",
    }
)


class Reason(StrEnum):
    """Stable machine-readable rejection codes (DLQ header ``error``, metric label ``reason``)."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    ENVELOPE_EMPTY = "envelope_empty"
    ENVELOPE_TOO_LARGE = "envelope_too_large"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_KIND = "unknown_kind"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_ID = "bad_id"
    BAD_EVENT_ID = "bad_event_id"
    BAD_APP = "bad_app"
    BAD_SUB_APP = "bad_sub_app"
    BAD_URL = "bad_url"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    # Not produced by the decoder: the collector uses it when a token's district differs from the
    # event's.
    WRONG_DISTRICT = "wrong_district"


class Rejection(NamedTuple):
    """Why an event (or a whole record) was rejected."""

    reason: Reason
    detail: str


class Decoded(NamedTuple):
    """A valid event and the names of the fields minimisation removed from it."""

    event: ActivityEvent
    dropped_fields: tuple[str, ...]


class Limits(NamedTuple):
    """The time window of acceptable ``ts`` (CONTRACT §2); take it from ``Settings``."""

    max_age_h: int = 72
    max_future_s: int = 300

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """``settings`` is a :class:`csync.settings.Settings`."""
        return cls(settings.max_event_age_h, settings.max_future_s)

    def ts_window(self, now_ms: int) -> tuple[int, int]:
        """The lowest and highest ``ts`` (epoch ms) accepted at ``now_ms``."""
        return now_ms - self.max_age_h * 3_600_000, now_ms + self.max_future_s * 1000


DEFAULT_LIMITS: Final = Limits()


class EventOutcome(NamedTuple):
    """The result for one event of a record.

    ``source_index`` is the position inside an envelope, ``-1`` for a single-event record or a
    record-level failure. Exactly one of ``event`` / ``rejection`` is set; ``raw`` is set only for
    rejections (see :mod:`schemas.decoder` for what bytes it holds).
    """

    source_index: int
    event: ActivityEvent | None
    rejection: Rejection | None
    dropped_fields: tuple[str, ...]
    raw: bytes | None
