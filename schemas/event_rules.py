"""The rules of one device activity event (CONTRACT §2): a parsed JSON value in, a valid minimised
:class:`~schemas.event.ActivityEvent` or a :class:`~schemas.outcome.Rejection` out, never an exception.

Ordered checks: the first failing rule names the reason. Minimisation happens here too: only the contract's
fields survive, the names of the others are reported in ``dropped_fields``; ``url`` is never kept, and on
``app == "web"`` it becomes ``sub_app`` (:func:`~schemas.web_url.web_host`). On any other app ``url`` is
ignored as the contract says: neither validated nor reported as dropped, because it is a contract field.

This runs once per event on the hottest path: the happy path raises no exception, reads each field once and
checks the three identifiers against a bounded cache of strings already found valid (a device sends the same
ids thousands of times) before falling back to a regular expression.
"""

from __future__ import annotations

import re
from itertools import repeat
from operator import itemgetter
from typing import Any, Final

from schemas.event import ACTIVE_KINDS, KINDS, ActivityEvent
from schemas.outcome import (
    CONTRACT_FIELDS,
    MAX_APP_CHARS,
    MAX_SUB_APP_CHARS,
    WEB_APP,
    EventOutcome,
    Reason,
    Rejection,
)
from schemas.web_url import web_host

ID_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
ID_CACHE_MAX: Final = 1 << 16
MISSING: Final[Any] = object()
"""Stands for an absent field (``None`` is a JSON value)."""
MISSING_TYPE: Final = type(MISSING)
REQUIRED_NAMES: Final = ("v", "event_id", "kind", "ts", "district_id", "student_id", "device_id")
_EVENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_EVENT_ID_RULE: Final = "event_id must be 1-64 chars of [A-Za-z0-9_-]"
_event_id_match: Final = _EVENT_ID_RE.fullmatch
tuple_new: Final = tuple.__new__
"""Builds a NamedTuple from a tuple of its fields without its ``__new__`` (the hot path's way)."""
_REQUIRED: Final = itemgetter(*REQUIRED_NAMES)

valid_ids: set[str] = set()
"""District, student and device ids already found valid; cleared when full (a hot id comes back at once)."""


def id_ok(value: str) -> bool:
    """Whether ``value`` is a valid district, student or device id (cached when it is)."""
    if value in valid_ids:
        return True
    if ID_RE.fullmatch(value) is None:
        return False
    if len(valid_ids) >= ID_CACHE_MAX:
        valid_ids.clear()
    valid_ids.add(value)
    return True


def validate(obj: Any, min_ts: int, max_ts: int, index: int) -> EventOutcome | Rejection:
    """Validate one parsed event: an :class:`EventOutcome` at ``index`` if valid, else a :class:`Rejection`.

    Written for speed (no exceptions, ids checked against a cache, tuples built with ``tuple.__new__``).
    """
    if type(obj) is not dict:
        return Rejection(Reason.NOT_OBJECT, f"event is a JSON {json_type(obj)}, not an object")
    try:  # the seven required fields in one call
        v, event_id, kind, ts, district_id, student_id, device_id = _REQUIRED(obj)
    except KeyError:  # one is missing: the checks below name the first
        v, event_id, kind, ts, district_id, student_id, device_id = map(
            obj.get, REQUIRED_NAMES, repeat(MISSING)
        )
    if type(v) is not int or v != 1:
        if v is MISSING:
            return Rejection(Reason.MISSING_FIELD, "v")
        return Rejection(Reason.UNSUPPORTED_VERSION, f"v={_short(v)}")
    if type(kind) is not str or kind not in KINDS:
        return _kind_rejection(kind)
    if type(event_id) is not str or _event_id_match(event_id) is None:
        return _str_rejection("event_id", event_id, Reason.BAD_EVENT_ID, _EVENT_ID_RULE)
    if type(ts) is not int:
        if ts is MISSING:
            return Rejection(Reason.MISSING_FIELD, "ts")
        return Rejection(Reason.WRONG_TYPE, "ts must be an integer (epoch ms)")
    known_ids = valid_ids
    if not (
        type(district_id) is str
        and type(student_id) is str
        and type(device_id) is str
        and (district_id in known_ids or id_ok(district_id))
        and (student_id in known_ids or id_ok(student_id))
        and (device_id in known_ids or id_ok(device_id))
    ):
        return _id_rejection(district_id, student_id, device_id)
    known = 7
    get = obj.get
    app = get("app", MISSING)
    if type(app) is str and 0 < len(app) <= MAX_APP_CHARS:
        known = 8
    elif app is MISSING:
        if kind in ACTIVE_KINDS:
            return Rejection(Reason.MISSING_FIELD, "app")
        app = ""
    else:
        return _str_rejection("app", app, Reason.BAD_APP, "app must be 1-64 chars")
    sub_app = get("sub_app", MISSING)
    if type(sub_app) is str and len(sub_app) <= MAX_SUB_APP_CHARS:
        known += 1
    elif sub_app is MISSING:
        sub_app = ""
    else:
        return _str_rejection("sub_app", sub_app, Reason.BAD_SUB_APP, "sub_app must be 0-128 chars")
    url = get("url", MISSING)
    if url is not MISSING:
        known += 1
        if app == WEB_APP:
            if type(url) is not str:
                return Rejection(Reason.WRONG_TYPE, "url must be a string")
            host = web_host(url)
            if host is None:
                return Rejection(Reason.BAD_URL, "url must be an absolute http(s) URL")
            sub_app = host
    if ts > max_ts:
        return Rejection(Reason.TS_IN_FUTURE, f"ts={ts} is after {max_ts}")
    if ts < min_ts:
        return Rejection(Reason.TS_TOO_OLD, f"ts={ts} is before {min_ts}")
    dropped: tuple[str, ...] = ()
    if len(obj) != known:
        dropped = tuple(sorted(k for k in obj if k not in CONTRACT_FIELDS))
    event = tuple_new(
        ActivityEvent, (event_id, kind, ts, district_id, student_id, device_id, app, sub_app)
    )
    outcome: EventOutcome = tuple_new(EventOutcome, (index, event, None, dropped, None))
    return outcome


def json_type(obj: Any) -> str:
    """The JSON name of a parsed value's type, for rejection details."""
    if obj is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(obj), "value"
    )


def _kind_rejection(kind: Any) -> Rejection:
    if kind is MISSING:
        return Rejection(Reason.MISSING_FIELD, "kind")
    if type(kind) is not str:
        return Rejection(Reason.WRONG_TYPE, "kind must be a string")
    return Rejection(Reason.UNKNOWN_KIND, f"kind={_short(kind)}")


def _str_rejection(name: str, value: Any, reason: Reason, rule: str) -> Rejection:
    if value is MISSING:
        return Rejection(Reason.MISSING_FIELD, name)
    if type(value) is not str:
        return Rejection(Reason.WRONG_TYPE, f"{name} must be a string")
    return Rejection(reason, rule)


def _id_rejection(*values: Any) -> Rejection:
    for name, value in zip(("district_id", "student_id", "device_id"), values, strict=True):
        if value is MISSING:
            return Rejection(Reason.MISSING_FIELD, name)
    for name, value in zip(("district_id", "student_id", "device_id"), values, strict=True):
        if type(value) is not str:
            return Rejection(Reason.WRONG_TYPE, f"{name} must be a string")
    for name, value in zip(("district_id", "student_id", "device_id"), values, strict=True):
        if ID_RE.fullmatch(value) is None:
            return Rejection(Reason.BAD_ID, f"{name} must be 1-64 chars of [A-Za-z0-9_.-]")
    raise AssertionError("unreachable: _id_rejection called for valid ids")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
