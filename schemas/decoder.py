"""The one decoder of device activity input (CONTRACT §2, §2a): bytes in, valid minimised events or
reasons out.

A Kafka record of ``device-activity.v1`` is either one event object or an envelope (a JSON array of
1–1,000 event objects, at most 1 MiB). :func:`decode_record` parses the record once with orjson and
validates every event on its own, so one bad event of an envelope rejects only itself. Nothing here
raises on bad input: every failure is an :class:`EventOutcome` carrying a :class:`Rejection` with a
stable :class:`Reason` code (the DLQ ``error`` header and the ``reason`` metric label).

Minimisation happens here too: only the contract's fields survive into
:class:`~schemas.event.ActivityEvent`; the names of the other fields are reported in
``dropped_fields`` for the per-field metric. ``url`` is never kept; for ``app == "web"`` it becomes
``sub_app`` (lower-cased host without a leading ``www.``). On any other app ``url`` is ignored as
the contract says: it is neither validated nor reported as a dropped field, because it is a contract
field, not data the device should not have sent.

Speed: this runs once per event on the hottest path. The happy path raises no exception, reads each
field once, and checks the three identifiers against a bounded cache of strings already found valid
(a device sends the same ids thousands of times) before falling back to a regular expression. Hosts
of web URLs are cached by URL the same way (a heartbeat repeats its page's URL).

Raw bytes of a rejection (what goes to the DLQ): for a single-event record, the record's original
bytes; for an envelope member, ``orjson.dumps`` of the parsed member — the original byte slice is
not recoverable after one parse, and the re-serialisation is the same JSON value. The 8 KiB limit of
an envelope member is measured on that re-serialisation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from enum import StrEnum
from itertools import chain, compress, repeat
from operator import is_, is_not, itemgetter
from typing import Any, Final, NamedTuple

import orjson

from schemas.event import ACTIVE_KINDS, KINDS, ActivityEvent

MAX_EVENT_BYTES: Final = 8 * 1024
MAX_ENVELOPE_BYTES: Final = 1024 * 1024
MAX_ENVELOPE_EVENTS: Final = 1000
MAX_URL_CHARS: Final = 2048
MAX_APP_CHARS: Final = 64
MAX_SUB_APP_CHARS: Final = 128
WEB_APP: Final = "web"
SINGLE_EVENT_INDEX: Final = -1

_ID_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_EVENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_CACHE_MAX: Final = 1 << 16
_MISSING: Final[Any] = object()
_MISSING_TYPE: Final = type(_MISSING)
_EVENT_ID_RULE: Final = "event_id must be 1-64 chars of [A-Za-z0-9_-]"
_event_id_match: Final = _EVENT_ID_RE.fullmatch
_tuple_new: Final = tuple.__new__
_REQUIRED_NAMES: Final = ("v", "event_id", "kind", "ts", "district_id", "student_id", "device_id")
_REQUIRED: Final = itemgetter(*_REQUIRED_NAMES)
# One getter per required field: the envelope path reads each field as a column.
_COLUMN_GETTERS: Final = tuple(map(itemgetter, _REQUIRED_NAMES))
_INT_TYPE: Final = {int}
_EMPTY_IF_MISSING: Final[dict[type, str]] = {_MISSING_TYPE: ""}
_EVENT_ID_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
# Envelope positions as ready-made ints (range() would allocate every one above 256).
_INDEXES: Final = tuple(range(MAX_ENVELOPE_EVENTS))
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
    # Not produced by this module: the collector uses it when a token's district differs from the
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


DEFAULT_LIMITS: Final = Limits()


class EventOutcome(NamedTuple):
    """The result for one event of a record.

    ``source_index`` is the position inside an envelope, ``-1`` for a single-event record or a
    record-level failure. Exactly one of ``event`` / ``rejection`` is set; ``raw`` is set only for
    rejections (see the module docstring for what bytes it holds).
    """

    source_index: int
    event: ActivityEvent | None
    rejection: Rejection | None
    dropped_fields: tuple[str, ...]
    raw: bytes | None


# Bounded caches of strings already validated. Cleared when full: simple, and a hot id comes back
# at once.
_valid_ids: set[str] = set()
_url_hosts: dict[str, str | None] = {}
# Bounds the URL cache's memory to about _CACHE_MAX * 256 characters.
_CACHED_URL_CHARS: Final = 256


def _id_ok(value: str) -> bool:
    if value in _valid_ids:
        return True
    if _ID_RE.fullmatch(value) is None:
        return False
    if len(_valid_ids) >= _CACHE_MAX:
        _valid_ids.clear()
    _valid_ids.add(value)
    return True


def web_host(url: str) -> str | None:
    """The ``sub_app`` of a web URL (lower-cased host, no leading ``www.``), or ``None`` if invalid.

    Valid: printable ASCII without spaces, ≤ 2048 chars, scheme http or https, a non-empty host of
    ``[a-z0-9.-_]`` (or a bracketed IPv6 literal), an optional numeric port, optional userinfo
    (dropped). Answers for URLs up to 256 chars are cached: heartbeats repeat their page's URL.
    """
    cached = _url_hosts.get(url, _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[no-any-return]
    host = _url_host(url)
    if len(url) <= _CACHED_URL_CHARS:
        if len(_url_hosts) >= _CACHE_MAX:
            _url_hosts.clear()
        _url_hosts[url] = host
    return host


def _url_host(url: str) -> str | None:
    if len(url) > MAX_URL_CHARS or not url.isascii() or " " in url or not url.isprintable():
        return None
    head = url[:8].lower()
    if head.startswith("https://"):
        start = 8
    elif head.startswith("http://"):
        start = 7
    else:
        return None
    end = url.find("/", start)
    authority = url[start:] if end < 0 else url[start:end]
    return _authority_host(authority.partition("?")[0].partition("#")[0])


def _authority_host(authority: str) -> str | None:
    at = authority.rfind("@")
    if at >= 0:
        authority = authority[at + 1 :]
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None
        host, port = authority[: close + 1].lower(), authority[close + 1 :]
        if port and not (port[0] == ":" and (len(port) == 1 or port[1:].isdigit())):
            return None
        inner = host[1:-1]
        if not inner or not all(c in "0123456789abcdef:." for c in inner):
            return None
        return host
    host, colon, port = authority.partition(":")
    if colon and port and not port.isdigit():
        return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or host.startswith(".") or ".." in host or not _HOST_CHARS.issuperset(host):
        return None
    if host.startswith("www.") and len(host) > 4:
        host = host[4:]
    if len(host) > MAX_SUB_APP_CHARS:
        return None
    return host


def _validate(obj: Any, min_ts: int, max_ts: int, index: int) -> EventOutcome | Rejection:
    """Validate one parsed event: an :class:`EventOutcome` if valid, else a :class:`Rejection`.

    Ordered checks: the first failing rule names the reason. Written for speed (no exceptions, ids
    checked against a cache, tuples built with ``tuple.__new__``): it runs once per event. A tried
    alternative (one ``map`` reading all fields, their types matched against a set of valid shapes)
    measured slower on CPython 3.11.
    """
    if type(obj) is not dict:
        return Rejection(Reason.NOT_OBJECT, f"event is a JSON {_json_type(obj)}, not an object")
    try:  # the seven required fields in one call
        v, event_id, kind, ts, district_id, student_id, device_id = _REQUIRED(obj)
    except KeyError:  # one is missing: the checks below name the first
        v, event_id, kind, ts, district_id, student_id, device_id = map(
            obj.get, _REQUIRED_NAMES, repeat(_MISSING)
        )
    if type(v) is not int or v != 1:
        if v is _MISSING:
            return Rejection(Reason.MISSING_FIELD, "v")
        return Rejection(Reason.UNSUPPORTED_VERSION, f"v={_short(v)}")
    if type(kind) is not str or kind not in KINDS:
        return _kind_rejection(kind)
    if type(event_id) is not str or _event_id_match(event_id) is None:
        return _str_rejection("event_id", event_id, Reason.BAD_EVENT_ID, _EVENT_ID_RULE)
    if type(ts) is not int:
        if ts is _MISSING:
            return Rejection(Reason.MISSING_FIELD, "ts")
        return Rejection(Reason.WRONG_TYPE, "ts must be an integer (epoch ms)")
    valid_ids = _valid_ids
    if not (
        type(district_id) is str
        and type(student_id) is str
        and type(device_id) is str
        and (district_id in valid_ids or _id_ok(district_id))
        and (student_id in valid_ids or _id_ok(student_id))
        and (device_id in valid_ids or _id_ok(device_id))
    ):
        return _id_rejection(district_id, student_id, device_id)
    known = 7
    get = obj.get
    app = get("app", _MISSING)
    if type(app) is str and 0 < len(app) <= MAX_APP_CHARS:
        known = 8
    elif app is _MISSING:
        if kind in ACTIVE_KINDS:
            return Rejection(Reason.MISSING_FIELD, "app")
        app = ""
    else:
        return _str_rejection("app", app, Reason.BAD_APP, "app must be 1-64 chars")
    sub_app = get("sub_app", _MISSING)
    if type(sub_app) is str and len(sub_app) <= MAX_SUB_APP_CHARS:
        known += 1
    elif sub_app is _MISSING:
        sub_app = ""
    else:
        return _str_rejection("sub_app", sub_app, Reason.BAD_SUB_APP, "sub_app must be 0-128 chars")
    url = get("url", _MISSING)
    if url is not _MISSING:
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
    event = _tuple_new(
        ActivityEvent, (event_id, kind, ts, district_id, student_id, device_id, app, sub_app)
    )
    outcome: EventOutcome = _tuple_new(EventOutcome, (index, event, None, dropped, None))
    return outcome


def _kind_rejection(kind: Any) -> Rejection:
    if kind is _MISSING:
        return Rejection(Reason.MISSING_FIELD, "kind")
    if type(kind) is not str:
        return Rejection(Reason.WRONG_TYPE, "kind must be a string")
    return Rejection(Reason.UNKNOWN_KIND, f"kind={_short(kind)}")


def _str_rejection(name: str, value: Any, reason: Reason, rule: str) -> Rejection:
    if value is _MISSING:
        return Rejection(Reason.MISSING_FIELD, name)
    if type(value) is not str:
        return Rejection(Reason.WRONG_TYPE, f"{name} must be a string")
    return Rejection(reason, rule)


def _id_rejection(*values: Any) -> Rejection:
    for name, value in zip(("district_id", "student_id", "device_id"), values, strict=True):
        if value is _MISSING:
            return Rejection(Reason.MISSING_FIELD, name)
    for name, value in zip(("district_id", "student_id", "device_id"), values, strict=True):
        if type(value) is not str:
            return Rejection(Reason.WRONG_TYPE, f"{name} must be a string")
    for name, value in zip(("district_id", "student_id", "device_id"), values, strict=True):
        if _ID_RE.fullmatch(value) is None:
            return Rejection(Reason.BAD_ID, f"{name} must be 1-64 chars of [A-Za-z0-9_.-]")
    raise AssertionError("unreachable: _id_rejection called for valid ids")


def _json_type(obj: Any) -> str:
    if obj is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(obj), "value"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _ts_window(now_ms: int, limits: Limits) -> tuple[int, int]:
    return now_ms - limits.max_age_h * 3_600_000, now_ms + limits.max_future_s * 1000


def decode_event(
    obj: Any, now_ms: int, max_age_h: int = 72, max_future_s: int = 300
) -> Decoded | Rejection:
    """Validate and minimise one event given as a parsed JSON value or as the bytes of one JSON
    object.

    Bytes are size-checked (8 KiB) and parsed; a parsed value is not size-checked (use
    :func:`decode_record` for records).
    """
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        if len(raw) > MAX_EVENT_BYTES:
            return Rejection(Reason.TOO_LARGE, f"event is {len(raw)} bytes > {MAX_EVENT_BYTES}")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Rejection(Reason.NOT_JSON, str(exc)[:200])
    min_ts, max_ts = _ts_window(now_ms, Limits(max_age_h, max_future_s))
    result = _validate(obj, min_ts, max_ts, SINGLE_EVENT_INDEX)
    if isinstance(result, Rejection):
        return result
    assert result.event is not None  # noqa: S101 - a valid outcome always carries its event
    return Decoded(result.event, result.dropped_fields)


def _record_failure(reason: Reason, detail: str, raw: bytes) -> list[EventOutcome]:
    return [EventOutcome(SINGLE_EVENT_INDEX, None, Rejection(reason, detail), (), raw)]


def decode_record(raw: bytes, now_ms: int, limits: Limits = DEFAULT_LIMITS) -> list[EventOutcome]:
    """Decode one Kafka record (a single event or an envelope) into one outcome per event.

    Record-level failures (not JSON, neither object nor array, empty or oversized envelope,
    oversized single event) give a single rejection with ``source_index == -1`` and the record's
    bytes.
    """
    size = len(raw)
    if size > MAX_EVENT_BYTES:
        if raw.lstrip()[:1] != b"[":
            return _record_failure(
                Reason.TOO_LARGE, f"event is {size} bytes > {MAX_EVENT_BYTES}", raw
            )
        if size > MAX_ENVELOPE_BYTES:
            return _record_failure(
                Reason.ENVELOPE_TOO_LARGE, f"envelope is {size} bytes > {MAX_ENVELOPE_BYTES}", raw
            )
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _record_failure(Reason.NOT_JSON, str(exc)[:200], raw)
    min_ts = now_ms - limits.max_age_h * 3_600_000
    max_ts = now_ms + limits.max_future_s * 1000
    if type(parsed) is dict:
        result = _validate(parsed, min_ts, max_ts, SINGLE_EVENT_INDEX)
        if isinstance(result, Rejection):
            return [EventOutcome(SINGLE_EVENT_INDEX, None, result, (), raw)]
        return [result]
    if type(parsed) is not list:
        return _record_failure(
            Reason.NOT_OBJECT, f"record is a JSON {_json_type(parsed)}, not an object or array", raw
        )
    count = len(parsed)
    if count == 0:
        return _record_failure(Reason.ENVELOPE_EMPTY, "envelope holds no event", raw)
    if count > MAX_ENVELOPE_EVENTS:
        return _record_failure(
            Reason.ENVELOPE_TOO_LARGE, f"envelope holds {count} events > {MAX_ENVELOPE_EVENTS}", raw
        )
    fast = _envelope_fast(parsed, min_ts, max_ts)
    if fast is not None:
        return fast
    return _envelope_per_member(parsed, min_ts, max_ts)


def _envelope_per_member(members: list[Any], min_ts: int, max_ts: int) -> list[EventOutcome]:
    """Judge each member on its own (the path for envelopes holding anything unusual)."""
    outcomes: list[EventOutcome] = []
    append = outcomes.append
    for index, member in enumerate(members):
        result = _validate(member, min_ts, max_ts, index)
        if (
            isinstance(result, Rejection)
            or result.dropped_fields
            or ("url" in member and _unbounded_url(member))
        ):
            append(_member_slow_path(index, member, result))
        else:
            append(result)
    return outcomes


def _envelope_fast(members: list[Any], min_ts: int, max_ts: int) -> list[EventOutcome] | None:
    """Accept a whole envelope column by column, or return ``None`` to have it judged per member.

    Envelopes are the bulk of the input, and per-event Python work is what limits the decoder, so
    this checks each field for all members at once with C-level builtins (``map``, ``set``,
    ``min``/``max``, one regular expression over all event ids joined). It only ever accepts: any
    member that is invalid, has extra fields or an ignored url (which might be oversized) sends the
    whole envelope to the per-member path, which names the reasons. Both paths give equal outcomes
    for every envelope they both accept (a property test checks this).

    Some type checks are left to the builtins: a member that is not an object, or a value of a
    wrong type where a set lookup, ``str.join`` or the regex needs a string, raises ``TypeError``
    (or ``KeyError`` for a missing field) — only on invalid input, never on the happy path.
    """
    try:
        return _envelope_columns(members, min_ts, max_ts)
    except (TypeError, KeyError):
        return None


def _envelope_columns(members: list[Any], min_ts: int, max_ts: int) -> list[EventOutcome] | None:
    count = len(members)
    # Each required field is read as a column (KeyError: one is missing; TypeError: a member is
    # not an object). Not rows zipped into columns: a row tuple and a tuple iterator per member are
    # objects the garbage collector tracks, and its young-generation passes visit every element.
    vs, event_ids, kinds, tss, district_ids, student_ids, device_ids = [
        list(map(get, members)) for get in _COLUMN_GETTERS
    ]
    if set(map(type, chain(vs, tss))) != _INT_TYPE or vs.count(1) != count:
        return None
    if min(tss) < min_ts or max(tss) > max_ts:
        return None
    if not KINDS.issuperset(kinds):  # KINDS holds only str: anything else fails or raises
        return None
    if not _ids_ok(event_ids, district_ids, student_ids, device_ids):
        return None
    apps: list[Any] = list(map(dict.get, members, repeat("app"), repeat(_MISSING)))
    sub_apps: list[Any] = list(map(dict.get, members, repeat("sub_app"), repeat(_MISSING)))
    urls: list[Any] = list(map(dict.get, members, repeat("url"), repeat(_MISSING)))
    app_types = list(map(type, apps))
    n_app = app_types.count(str)
    # A present app is 1-64 chars (truth tests: _MISSING is true, only "" is false).
    if not all(apps):
        return None
    if n_app != count:
        if n_app + app_types.count(_MISSING_TYPE) != count:
            return None
        # Only idle and logout may omit app.
        if not ACTIVE_KINDS.isdisjoint(compress(kinds, map(is_, apps, repeat(_MISSING)))):
            return None
        apps = list(map(_EMPTY_IF_MISSING.get, app_types, apps))
    if max(map(len, apps)) > MAX_APP_CHARS:
        return None
    sub_app_types = list(map(type, sub_apps))
    n_sub_app = sub_app_types.count(str)
    if n_sub_app != count:
        if n_sub_app + sub_app_types.count(_MISSING_TYPE) != count:
            return None
        sub_apps = list(map(_EMPTY_IF_MISSING.get, sub_app_types, sub_apps))
    if max(map(len, sub_apps)) > MAX_SUB_APP_CHARS:
        return None
    n_url = count - list(map(type, urls)).count(_MISSING_TYPE)
    # Any field beyond the contract's makes a member's size exceed its known fields: such an
    # envelope goes to the per-member path, which names and counts the dropped fields.
    if sum(map(len, members)) != 7 * count + n_app + n_sub_app + n_url:
        return None
    if n_url:
        hosted = _envelope_urls(urls, apps, sub_apps, n_url)
        if hosted is None:
            return None
        sub_apps = hosted
    events = list(
        map(
            _tuple_new,
            repeat(ActivityEvent),
            zip(
                event_ids, kinds, tss, district_ids, student_ids, device_ids, apps, sub_apps,
                strict=True,
            ),
        )
    )  # fmt: skip
    return list(
        map(
            _tuple_new,
            repeat(EventOutcome),
            zip(_INDEXES, events, repeat(None), repeat(()), repeat(None)),
        )
    )


def _ids_ok(
    event_ids: list[Any], district_ids: list[Any], student_ids: list[Any], device_ids: list[Any]
) -> bool:
    """Whether all ids of an envelope are valid (CONTRACT §2).

    Event ids are unique: checked over the joined column (``str.join`` raises TypeError for a value
    that is not a string; on ASCII text, deleting the allowed bytes leaves nothing exactly when
    every character is allowed), lengths on their own. District, student and device ids repeat:
    checked against the cache of ids already found valid (this also computes their hashes once,
    which every later lookup of them reuses).
    """
    joined = "".join(event_ids)
    if not joined.isascii() or joined.encode().translate(None, _EVENT_ID_BYTES):
        return False
    if not all(event_ids) or max(map(len, event_ids)) > 64:  # all(): no empty one
        return False
    valid_ids = _valid_ids
    for ids in (district_ids, student_ids, device_ids):
        # valid_ids holds only str; an unknown value goes through _id_ok (regex: str only)
        if not valid_ids.issuperset(ids) and not all(map(_id_ok, set(ids) - valid_ids)):
            return False
    return True


def _envelope_urls(
    urls: list[Any], apps: list[str], sub_apps: list[str], n_url: int
) -> list[str] | None:
    """``sub_apps`` with web urls turned into hosts; None if a url is invalid or may be oversized.

    The usual envelope: every url is on a web app and its host is cached (a heartbeat repeats its
    page's url), so two C-level lookups per url do it.
    """
    present = list(map(is_not, urls, repeat(_MISSING)))
    url_hosts: dict[Any, Any] = _url_hosts
    if list(compress(apps, present)).count(WEB_APP) == n_url:
        web_urls = list(compress(urls, present))
        # TypeError: an unhashable url. A url too long to be cached fails both checks.
        if all(map(url_hosts.get, web_urls)) or _hosts_cached(web_urls):
            # A member without url looks up _MISSING, which no cache holds: its sub_app stays.
            return list(map(url_hosts.get, urls, sub_apps))
    sub_apps = list(sub_apps)
    for i in compress(_INDEXES, present):
        url = urls[i]
        if apps[i] != WEB_APP:
            if not (
                url is None
                or (type(url) is str and len(url) <= MAX_URL_CHARS and url.isascii()
                    and url.isprintable())
            ):  # fmt: skip
                return None
            continue
        if type(url) is not str:
            return None
        host = web_host(url)
        if host is None:
            return None
        sub_apps[i] = host
    return sub_apps


def _hosts_cached(urls: list[Any]) -> bool:
    """Compute and cache the hosts of ``urls``; False if one is invalid or could not be cached."""
    for url in urls:
        if type(url) is not str or web_host(url) is None:
            return False
    return all(map(_url_hosts.get, urls))


def _member_slow_path(index: int, member: Any, result: EventOutcome | Rejection) -> EventOutcome:
    """An envelope member that failed, or that may exceed 8 KiB after re-serialisation.

    A valid member holding only contract fields is far below 8 KiB: every field is bounded (ids 64
    ASCII chars, app 64 and sub_app 128 chars of at most 6 escaped bytes, a web url 2048 printable
    ASCII chars). Only extra fields or an unvalidated url (ignored on non-web apps) can make it
    larger, so only those are measured.
    """
    try:
        encoded = orjson.dumps(member)
    except TypeError:  # nested deeper than orjson writes (254 levels): far from a valid event
        rejection = Rejection(Reason.TOO_LARGE, "event nests deeper than 254 levels")
        return EventOutcome(index, None, rejection, (), _deep_json(member))
    if len(encoded) > MAX_EVENT_BYTES:
        detail = f"event is {len(encoded)} bytes > {MAX_EVENT_BYTES}"
        rejection = Rejection(Reason.TOO_LARGE, detail)
        return EventOutcome(index, None, rejection, (), encoded)
    if isinstance(result, Rejection):
        return EventOutcome(index, None, result, (), encoded)
    return result


def _deep_json(member: Any) -> bytes:
    """The JSON of a member too deep for orjson (the standard library's encoder), or ``b""``."""
    try:
        return json.dumps(member, separators=(",", ":"), ensure_ascii=False).encode()
    except (RecursionError, ValueError):
        return b""


def _unbounded_url(member: dict[str, Any]) -> bool:
    url = member.get("url")
    if url is None or member.get("app") == WEB_APP:
        return False
    return not (
        type(url) is str and len(url) <= MAX_URL_CHARS and url.isascii() and url.isprintable()
    )


def _event_dict(event: ActivityEvent) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": 1,
        "event_id": event.event_id,
        "kind": event.kind,
        "ts": event.ts,
        "district_id": event.district_id,
        "student_id": event.student_id,
        "device_id": event.device_id,
    }
    if event.app:
        obj["app"] = event.app
    if event.sub_app:
        obj["sub_app"] = event.sub_app
    return obj


def event_object(event: ActivityEvent) -> dict[str, Any]:
    """The v1 JSON object of a valid event (``app``/``sub_app`` omitted when empty)."""
    return _event_dict(event)


def encode_event(event: ActivityEvent) -> bytes:
    """The v1 JSON of a valid event (``app``/``sub_app`` omitted when empty). Decodes back to
    ``event``.
    """
    return orjson.dumps(_event_dict(event))


def encode_envelope(events: Iterable[ActivityEvent]) -> bytes:
    """An envelope (CONTRACT §2a) of ``events``; the caller keeps it to 1,000 events and 1 MiB."""
    return orjson.dumps([_event_dict(e) for e in events])
