"""The envelope fast path (CONTRACT §2a): accept a whole envelope column by column, or hand it back.

Envelopes are the bulk of the input, and per-event Python work is what limits the decoder, so this checks each
field for all members at once with C-level builtins (``map``, ``set``, ``min``/``max``, one translation over all
event ids joined). It only ever accepts: any member that is invalid, has extra fields or an ignored url (which
might be oversized) sends the whole envelope to the per-member path of :mod:`schemas.decoder`, which names the
reasons. Both paths give equal outcomes for every envelope they both accept (a property test checks this).
"""

from __future__ import annotations

from itertools import chain, compress, repeat
from operator import is_, is_not, itemgetter
from typing import Any, Final

from schemas.event import ACTIVE_KINDS, KINDS, ActivityEvent
from schemas.event_rules import MISSING, MISSING_TYPE, REQUIRED_NAMES, id_ok, tuple_new, valid_ids
from schemas.outcome import (
    MAX_APP_CHARS,
    MAX_ENVELOPE_EVENTS,
    MAX_SUB_APP_CHARS,
    WEB_APP,
    EventOutcome,
)
from schemas.web_url import bounded_url, url_hosts, web_host

# One getter per required field: each field is read as a column.
_COLUMN_GETTERS: Final = tuple(map(itemgetter, REQUIRED_NAMES))
_INT_TYPE: Final = {int}
_EMPTY_IF_MISSING: Final[dict[type, str]] = {MISSING_TYPE: ""}
_EVENT_ID_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
# Envelope positions as ready-made ints (range() would allocate every one above 256).
INDEXES: Final = tuple(range(MAX_ENVELOPE_EVENTS))


def envelope_fast(members: list[Any], min_ts: int, max_ts: int) -> list[EventOutcome] | None:
    """One valid outcome per member, or ``None`` to have the envelope judged per member.

    Some type checks are left to the builtins: a member that is not an object, or a value of a
    wrong type where a set lookup, ``str.join`` or the translation needs a string, raises ``TypeError``
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
    apps: list[Any] = list(map(dict.get, members, repeat("app"), repeat(MISSING)))
    sub_apps: list[Any] = list(map(dict.get, members, repeat("sub_app"), repeat(MISSING)))
    urls: list[Any] = list(map(dict.get, members, repeat("url"), repeat(MISSING)))
    app_types = list(map(type, apps))
    n_app = app_types.count(str)
    # A present app is 1-64 chars (truth tests: MISSING is true, only "" is false).
    if not all(apps):
        return None
    if n_app != count:
        if n_app + app_types.count(MISSING_TYPE) != count:
            return None
        # Only idle and logout may omit app.
        if not ACTIVE_KINDS.isdisjoint(compress(kinds, map(is_, apps, repeat(MISSING)))):
            return None
        apps = list(map(_EMPTY_IF_MISSING.get, app_types, apps))
    if max(map(len, apps)) > MAX_APP_CHARS:
        return None
    sub_app_types = list(map(type, sub_apps))
    n_sub_app = sub_app_types.count(str)
    if n_sub_app != count:
        if n_sub_app + sub_app_types.count(MISSING_TYPE) != count:
            return None
        sub_apps = list(map(_EMPTY_IF_MISSING.get, sub_app_types, sub_apps))
    if max(map(len, sub_apps)) > MAX_SUB_APP_CHARS:
        return None
    n_url = count - list(map(type, urls)).count(MISSING_TYPE)
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
            tuple_new,
            repeat(ActivityEvent),
            zip(
                event_ids, kinds, tss, district_ids, student_ids, device_ids, apps, sub_apps,
                strict=True,
            ),
        )
    )  # fmt: skip
    return list(
        map(
            tuple_new,
            repeat(EventOutcome),
            zip(INDEXES, events, repeat(None), repeat(()), repeat(None)),
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
    known = valid_ids
    for ids in (district_ids, student_ids, device_ids):
        # valid_ids holds only str; an unknown value goes through id_ok (regex: str only)
        if not known.issuperset(ids) and not all(map(id_ok, set(ids) - known)):
            return False
    return True


def _envelope_urls(
    urls: list[Any], apps: list[str], sub_apps: list[str], n_url: int
) -> list[str] | None:
    """``sub_apps`` with web urls turned into hosts; None if a url is invalid or may be oversized.

    The usual envelope: every url is on a web app and its host is cached (a heartbeat repeats its
    page's url), so two C-level lookups per url do it.
    """
    present = list(map(is_not, urls, repeat(MISSING)))
    hosts: dict[Any, Any] = url_hosts
    if list(compress(apps, present)).count(WEB_APP) == n_url:
        web_urls = list(compress(urls, present))
        # TypeError: an unhashable url. A url too long to be cached fails both checks.
        if all(map(hosts.get, web_urls)) or _hosts_cached(web_urls):
            # A member without url looks up MISSING, which no cache holds: its sub_app stays.
            return list(map(hosts.get, urls, sub_apps))
    sub_apps = list(sub_apps)
    for i in compress(INDEXES, present):
        url = urls[i]
        if apps[i] != WEB_APP:
            if not bounded_url(url):
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
    return all(map(url_hosts.get, urls))
