"""The envelope fast path (CONTRACT §2a): judge a whole envelope column by column, and name the members
it cannot accept.

Envelopes are the bulk of the input, and per-event Python work is what limits the decoder, so this checks each
field for all members at once with C-level builtins (``map``, ``set``, ``min``/``max``, one translation over all
event ids joined). A check that fails for the column as a whole is repeated member by member, only for that
field, to find the members that fail it. The valid members come back as events; every other member — invalid,
with extra fields, or with an ignored url that might be oversized — is only *named*: the per-member path of
:mod:`schemas.decoder` judges it and gives its reason. So one bad event does not make the rest of its envelope
slow, and a member is accepted here only if the per-member path accepts it unchanged (a property test checks
both paths give equal outcomes on envelopes mixing every reason).
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import gt, is_not, itemgetter, lt, ne, not_
from typing import Any, Final

from schemas.event import ACTIVE_KINDS, KINDS, ActivityEvent
from schemas.event_rules import MISSING, MISSING_TYPE, REQUIRED_NAMES, id_ok, tuple_new, valid_ids
from schemas.outcome import (
    CONTRACT_FIELDS,
    MAX_APP_CHARS,
    MAX_ENVELOPE_EVENTS,
    MAX_SUB_APP_CHARS,
    WEB_APP,
)
from schemas.web_url import bounded_url, url_hosts, web_host

# One getter per required field: each field is read as a column.
_COLUMN_GETTERS: Final = tuple(zip(REQUIRED_NAMES, map(itemgetter, REQUIRED_NAMES), strict=True))
_INT_TYPE: Final = {int}
_DICT_TYPE: Final = {dict}
_EMPTY_IF_MISSING: Final[dict[type, str]] = {MISSING_TYPE: ""}
_EVENT_ID_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_IDLE_KINDS: Final = tuple(KINDS - ACTIVE_KINDS)  # a tuple: compared, not hashed
# Stands in for a member that is not an object, so every column keeps the envelope's positions.
_PLACEHOLDER: Final = dict.fromkeys(REQUIRED_NAMES, "")
# Envelope positions as ready-made ints (range() would allocate every one above 256).
INDEXES: Final = tuple(range(MAX_ENVELOPE_EVENTS))

Split = tuple[list[ActivityEvent], list[int]]
"""The valid members' events in envelope order, and the positions of the others (ascending)."""


def envelope_split(members: list[Any], min_ts: int, max_ts: int) -> Split:
    """The events of the members valid as they are, and the positions of all other members.

    Every member is either among the events (valid, minimised, no dropped field) or named for the
    per-member path, never both; a member named there may still be valid (extra fields, an ignored
    long url), which that path decides.
    """
    count = len(members)
    bad: set[int] = set()
    if set(map(type, members)) != _DICT_TYPE:
        bad.update(i for i, m in enumerate(members) if type(m) is not dict)
        members = [_PLACEHOLDER if i in bad else m for i, m in enumerate(members)]
    required: list[list[Any]] = []
    n_missing = 0  # required fields absent, over all members
    for name, get in _COLUMN_GETTERS:
        try:
            required.append(list(map(get, members)))
        except KeyError:  # a member lacks it: MISSING fails every check of the field
            column = list(map(dict.get, members, repeat(name), repeat(MISSING)))
            n_missing += column.count(MISSING)
            required.append(column)
    vs, event_ids, kinds, tss, district_ids, student_ids, device_ids = required
    # Each check runs on the whole column; only when it fails are its members looked at, with
    # C-level masks where the values allow (the usual invalid event is one of ~1,000).
    if vs.count(1) != count or set(map(type, vs)) != _INT_TYPE:
        bad.update(compress(INDEXES, map(is_not, map(type, vs), repeat(int))))
        bad.update(compress(INDEXES, map(ne, vs, repeat(1))))
    if set(map(type, tss)) != _INT_TYPE or min(tss) < min_ts or max(tss) > max_ts:
        _bad_ts(tss, min_ts, max_ts, bad)
    if not _all_in(KINDS, kinds):  # KINDS holds only str
        try:
            bad.update(compress(INDEXES, map(not_, map(KINDS.__contains__, kinds))))
        except TypeError:  # an unhashable kind
            bad.update(i for i, k in enumerate(kinds) if type(k) is not str or k not in KINDS)
    if not _event_ids_ok(event_ids):
        bad.update(i for i, e in enumerate(event_ids) if not _event_id_ok(e))
    for ids in (district_ids, student_ids, device_ids):
        if not _ids_ok(ids):
            _bad_ids(ids, bad)
    apps, n_app = _apps(members, kinds, bad)
    sub_apps, n_sub_app = _sub_apps(members, bad)
    urls: list[Any] = list(map(dict.get, members, repeat("url"), repeat(MISSING)))
    n_url = count - urls.count(MISSING)
    # Any field beyond the contract's makes a member's size exceed its known fields: such a member
    # goes to the per-member path, which names and counts the dropped fields. The sizes tell: the
    # counts of apps and sub_apps leave out empty ones, so an empty one present makes the sizes
    # differ as well (then each member is looked at): equal sizes mean no extra field anywhere.
    known = 7 * count - n_missing + n_app + n_sub_app + n_url
    if sum(map(len, members)) != known:
        extra = map(not_, map(CONTRACT_FIELDS.issuperset, members))
        bad.update(compress(INDEXES, extra))
    if n_url:
        sub_apps = _envelope_urls(urls, apps, sub_apps, n_url, bad)
    columns = (event_ids, kinds, tss, district_ids, student_ids, device_ids, apps, sub_apps)
    rows = zip(*columns, strict=True)
    if bad:
        keep = [True] * count
        for i in bad:
            keep[i] = False
        rows = compress(rows, keep)  # type: ignore[assignment]
    return list(map(tuple_new, repeat(ActivityEvent), rows)), sorted(bad)


def _all_in(allowed: frozenset[str] | set[str], values: list[Any]) -> bool:
    try:
        return allowed.issuperset(values)
    except TypeError:  # an unhashable value
        return False


def _event_id_ok(value: Any) -> bool:
    if type(value) is not str or not value or len(value) > 64 or not value.isascii():
        return False
    return not value.encode().translate(None, _EVENT_ID_BYTES)


def _event_ids_ok(event_ids: list[Any]) -> bool:
    """Whether every event id is valid (CONTRACT §2), over the joined column.

    Event ids are unique, so no cache helps: ``str.join`` raises TypeError for a value that is not
    a string; on ASCII text, deleting the allowed bytes leaves nothing exactly when every character
    is allowed; lengths are checked on their own.
    """
    try:
        joined = "".join(event_ids)
    except TypeError:
        return False
    if not joined.isascii() or joined.encode().translate(None, _EVENT_ID_BYTES):
        return False
    return all(event_ids) and max(map(len, event_ids)) <= 64  # all(): no empty one


def _ids_ok(ids: list[Any]) -> bool:
    """Whether a column of district, student or device ids is valid.

    These repeat, so they are checked against the cache of ids already found valid (this also
    computes their hashes once, which every later lookup of them reuses).
    """
    known = valid_ids
    try:
        return known.issuperset(ids) or all(map(id_ok, set(ids) - known))
    except TypeError:  # an unhashable value, or a value that is not a string (regex)
        return False


def _bad_ts(tss: list[Any], min_ts: int, max_ts: int, bad: set[int]) -> None:
    """Name the members whose ts is not an integer in the window."""
    if set(map(type, tss)) != _INT_TYPE:
        not_int = list(map(is_not, map(type, tss), repeat(int)))
        bad.update(compress(INDEXES, not_int))
        tss = [min_ts if wrong else ts for ts, wrong in zip(tss, not_int, strict=True)]
    bad.update(compress(INDEXES, map(lt, tss, repeat(min_ts))))
    bad.update(compress(INDEXES, map(gt, tss, repeat(max_ts))))


def _bad_ids(ids: list[Any], bad: set[int]) -> None:
    """Name the members whose id in this column is not a valid id."""
    try:
        wrong = {x for x in set(ids) - valid_ids if type(x) is not str or not id_ok(x)}
    except TypeError:  # an unhashable value
        bad.update(i for i, x in enumerate(ids) if type(x) is not str or not id_ok(x))
        return
    bad.update(compress(INDEXES, map(wrong.__contains__, ids)))


def _apps(members: list[Any], kinds: list[Any], bad: set[int]) -> tuple[list[str], int]:
    """The app column ("" where absent) and how many members hold a non-empty one.

    An app is 1-64 chars, and only idle and logout may omit it. Absent and empty read alike here,
    so each empty one is looked at (idle and logout events are a few per cent).
    """
    apps: list[Any] = list(map(dict.get, members, repeat("app"), repeat("")))
    _strings_only(apps, bad)
    n_empty = apps.count("")
    i = -1
    for _ in range(n_empty):
        i = apps.index("", i + 1)
        if kinds[i] not in _IDLE_KINDS or "app" in members[i]:
            bad.add(i)
    if max(map(len, apps)) > MAX_APP_CHARS:
        bad.update(i for i, a in enumerate(apps) if len(a) > MAX_APP_CHARS)
    return apps, len(apps) - n_empty


def _sub_apps(members: list[Any], bad: set[int]) -> tuple[list[str], int]:
    """The sub_app column ("" where absent) and how many members hold a non-empty one."""
    sub_apps: list[Any] = list(map(dict.get, members, repeat("sub_app"), repeat("")))
    _strings_only(sub_apps, bad)
    if max(map(len, sub_apps)) > MAX_SUB_APP_CHARS:
        bad.update(i for i, s in enumerate(sub_apps) if len(s) > MAX_SUB_APP_CHARS)
    return sub_apps, len(sub_apps) - sub_apps.count("")


def _strings_only(column: list[Any], bad: set[int]) -> None:
    """Name the members whose value in ``column`` is not a string, and blank those values."""
    try:
        "".join(column)  # raises TypeError for a value that is not a string
    except TypeError:
        for i, value in enumerate(column):
            if type(value) is not str:
                bad.add(i)
                column[i] = ""


def _envelope_urls(
    urls: list[Any], apps: list[Any], sub_apps: list[Any], n_url: int, bad: set[int]
) -> list[Any]:
    """``sub_apps`` with web urls turned into hosts; an invalid url (or an ignored one that may be
    oversized) names its member in ``bad``.

    The usual envelope: every url is on a web app and its host is cached (a heartbeat repeats its
    page's url), so two C-level lookups per url do it.
    """
    present = list(map(is_not, urls, repeat(MISSING)))
    hosts: dict[Any, Any] = url_hosts
    if list(compress(apps, present)).count(WEB_APP) == n_url:
        web_urls = list(compress(urls, present))
        try:  # TypeError: an unhashable url. A url too long to be cached fails both checks.
            if all(map(hosts.get, web_urls)) or _hosts_cached(web_urls):
                # A member without url looks up MISSING, which no cache holds: its sub_app stays.
                return list(map(hosts.get, urls, sub_apps))
        except TypeError:
            pass
    sub_apps = list(sub_apps)
    for i in compress(INDEXES, present):
        url = urls[i]
        if apps[i] != WEB_APP:
            if not bounded_url(url):
                bad.add(i)
            continue
        host = web_host(url) if type(url) is str else None
        if host is None:
            bad.add(i)
        else:
            sub_apps[i] = host
    return sub_apps


def _hosts_cached(urls: list[Any]) -> bool:
    """Compute and cache the hosts of ``urls``; False if one is invalid or could not be cached."""
    for url in urls:
        if type(url) is not str or web_host(url) is None:
            return False
    return all(map(url_hosts.get, urls))
