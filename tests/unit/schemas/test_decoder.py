"""Rules of CONTRACT §2/§2a as the decoder applies them, beyond the example files."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import decoder, envelope_columns, event_rules
from schemas.decoder import (
    Decoded,
    Limits,
    Reason,
    Rejection,
    decode_event,
    decode_record,
    encode_envelope,
    encode_event,
    web_host,
)
from schemas.event import ActivityEvent

NOW = 1_764_378_000_000


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "event_id": "e-1",
        "kind": "heartbeat",
        "ts": NOW - 1000,
        "district_id": "d1",
        "student_id": "s1",
        "device_id": "dev1",
        "app": "docs",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def reason(obj: Any) -> Reason | None:
    result = decode_event(obj, NOW)
    return result.reason if isinstance(result, Rejection) else None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"v": True}, Reason.UNSUPPORTED_VERSION),
        ({"v": 1.0}, Reason.UNSUPPORTED_VERSION),
        ({"v": "1"}, Reason.UNSUPPORTED_VERSION),
        ({"v": ...}, Reason.MISSING_FIELD),
        ({"ts": True}, Reason.WRONG_TYPE),
        ({"ts": float(NOW)}, Reason.WRONG_TYPE),
        ({"ts": str(NOW)}, Reason.WRONG_TYPE),
        ({"kind": 3}, Reason.WRONG_TYPE),
        ({"kind": "Heartbeat"}, Reason.UNKNOWN_KIND),
        ({"event_id": "a" * 65}, Reason.BAD_EVENT_ID),
        ({"event_id": "a.b"}, Reason.BAD_EVENT_ID),
        ({"event_id": ""}, Reason.BAD_EVENT_ID),
        ({"district_id": "d:1"}, Reason.BAD_ID),
        ({"student_id": "é"}, Reason.BAD_ID),
        ({"device_id": "x" * 65}, Reason.BAD_ID),
        ({"device_id": 5}, Reason.WRONG_TYPE),
        ({"student_id": ...}, Reason.MISSING_FIELD),
        ({"app": ...}, Reason.MISSING_FIELD),
        ({"app": "a" * 65}, Reason.BAD_APP),
        ({"app": None}, Reason.WRONG_TYPE),
        ({"kind": "idle", "app": ""}, Reason.BAD_APP),  # optional, but validated if present
        ({"sub_app": "s" * 129}, Reason.BAD_SUB_APP),
        ({"sub_app": 7}, Reason.WRONG_TYPE),
        ({"app": "web", "url": 7}, Reason.WRONG_TYPE),
        ({"app": "web", "url": "www.example.org"}, Reason.BAD_URL),
        ({"app": "web", "url": "https://" + "a" * 2050}, Reason.BAD_URL),
        ({"ts": NOW + 300_001}, Reason.TS_IN_FUTURE),
        ({"ts": NOW - 72 * 3_600_000 - 1}, Reason.TS_TOO_OLD),
    ],
)
def test_rejection_reason(changes: dict[str, Any], expected: Reason) -> None:
    assert reason(event(**changes)) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"sub_app": "s" * 128},
        {"ts": NOW + 300_000},
        {"ts": NOW - 72 * 3_600_000},
        {"kind": "logout", "app": ...},
        {"app": "docs", "url": {"not": "checked"}},  # url ignored on non-web apps
        {"event_id": "A_z-9" * 12 + "abcd"},
    ],
)
def test_accepted_edge_cases(changes: dict[str, Any]) -> None:
    assert reason(event(**changes)) is None


def test_url_on_non_web_app_is_neither_kept_nor_reported_as_dropped() -> None:
    result = decode_event(event(url="https://example.org/", sub_app="chapter-2"), NOW)
    assert isinstance(result, Decoded)
    assert result.event.sub_app == "chapter-2"
    assert result.dropped_fields == ()


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://www.Example.ORG/path?q=1#x", "example.org"),
        ("HTTP://user:secret@docs.example.org:8443/a", "docs.example.org"),
        ("https://example.org", "example.org"),
        ("https://example.org?q=1", "example.org"),
        ("https://example.org.", "example.org"),
        ("https://www2.example.org/", "www2.example.org"),
        ("https://www/", "www"),
        ("https://[2001:DB8::1]:443/", "[2001:db8::1]"),
        ("https://10.0.0.1/", "10.0.0.1"),
        ("ftp://example.org/", None),
        ("https:///path", None),
        ("https://exa mple.org/", None),
        ("https://example.org:80a/", None),
        ("https://ex%61mple.org/", None),
        ("https://a..b/", None),
        ("https://bücher.de/", None),
        ("https://example.org/\n", None),
        ("https://" + "a" * 129 + "/", None),
    ],
)
def test_web_host(url: str, host: str | None) -> None:
    assert web_host(url) == host
    assert web_host(url) == host  # second call answered from the cache


def test_web_event_sub_app_overrides_the_given_one_and_url_is_dropped() -> None:
    result = decode_event(
        event(app="web", sub_app="lies.example", url="https://www.pbs.org/x"), NOW
    )
    assert isinstance(result, Decoded)
    assert result.event.sub_app == "pbs.org"
    assert "x" not in result.event.sub_app.split(".")


def test_unknown_fields_are_dropped_and_named() -> None:
    raw = orjson.dumps(event(name="Ada", phone="555", gps=[1, 2]))
    (outcome,) = decode_record(raw, NOW)
    assert outcome.event == ActivityEvent(
        "e-1", "heartbeat", NOW - 1000, "d1", "s1", "dev1", "docs", ""
    )
    assert outcome.dropped_fields == ("gps", "name", "phone")


def test_bytes_input_to_decode_event() -> None:
    assert isinstance(decode_event(orjson.dumps(event()), NOW), Decoded)
    assert reason(b"{nope") == Reason.NOT_JSON
    assert reason(b"[1]") == Reason.NOT_OBJECT
    assert reason(orjson.dumps(event(pad="x" * 9000))) == Reason.TOO_LARGE


def test_record_level_failures_have_index_minus_one_and_the_record_bytes() -> None:
    cases = {
        b"\xff\xfe": Reason.NOT_JSON,
        b"42": Reason.NOT_OBJECT,
        b"null": Reason.NOT_OBJECT,
        b" [ ] ": Reason.ENVELOPE_EMPTY,
        orjson.dumps([event()] * 1001): Reason.ENVELOPE_TOO_LARGE,
        b"[" + b" " * (1024 * 1024) + b"]": Reason.ENVELOPE_TOO_LARGE,
        orjson.dumps(event(pad="x" * 8200)): Reason.TOO_LARGE,
    }
    for raw, expected in cases.items():
        (outcome,) = decode_record(raw, NOW)
        assert outcome.rejection is not None
        assert (outcome.rejection.reason, outcome.source_index, outcome.raw) == (expected, -1, raw)


def test_envelope_members_are_judged_one_by_one() -> None:
    members: list[Any] = [
        event(event_id="a"),
        7,
        event(event_id="b", kind="nap"),
        event(event_id="c", notes="x" * 8200),  # valid fields, but > 8 KiB re-serialised
        event(event_id="d", extra="y"),
        event(event_id="e", app="web", url="https://www.khanacademy.org/"),
    ]
    raw = orjson.dumps(members)
    assert len(raw) > decoder.MAX_EVENT_BYTES  # an envelope may exceed 8 KiB as a whole
    outcomes = decode_record(raw, NOW)
    assert [o.source_index for o in outcomes] == list(range(6))
    reasons = [o.rejection.reason if o.rejection else None for o in outcomes]
    assert reasons == [None, Reason.NOT_OBJECT, Reason.UNKNOWN_KIND, Reason.TOO_LARGE, None, None]
    assert outcomes[1].raw == b"7"
    assert outcomes[2].raw == orjson.dumps(members[2])
    assert outcomes[3].raw == orjson.dumps(members[3])
    assert outcomes[4].dropped_fields == ("extra",)
    assert outcomes[5].event is not None and outcomes[5].event.sub_app == "khanacademy.org"


def test_ignored_url_can_make_an_envelope_member_too_large() -> None:
    member = event(app="docs", url="\u0001" * 2000)  # escapes to 6 bytes each
    (outcome,) = decode_record(orjson.dumps([member]), NOW)
    assert outcome.rejection is not None and outcome.rejection.reason == Reason.TOO_LARGE


def test_limits_are_honoured() -> None:
    raw = orjson.dumps(event(ts=NOW - 2 * 3_600_000))
    assert decode_record(raw, NOW, Limits(max_age_h=3))[0].event is not None
    rejection = decode_record(raw, NOW, Limits(max_age_h=1))[0].rejection
    assert rejection is not None and rejection.reason == Reason.TS_TOO_OLD


def test_id_cache_stays_bounded_and_never_holds_invalid_ids() -> None:
    for i in range(event_rules.ID_CACHE_MAX + 10):
        assert event_rules.id_ok(f"s{i}")
    assert len(event_rules.valid_ids) <= event_rules.ID_CACHE_MAX
    assert not event_rules.id_ok("bad id")
    assert "bad id" not in event_rules.valid_ids


_id = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=64)
_events = st.builds(
    ActivityEvent,
    event_id=st.text(alphabet="abcXYZ019_-", min_size=1, max_size=64),
    kind=st.sampled_from(["app_focus", "heartbeat"]),
    ts=st.integers(min_value=NOW - 72 * 3_600_000, max_value=NOW + 300_000),
    district_id=_id,
    student_id=_id,
    device_id=_id,
    app=st.text(min_size=1, max_size=64),
    sub_app=st.text(max_size=128),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_events, min_size=1, max_size=20))
def test_encode_then_decode_round_trips(events: list[ActivityEvent]) -> None:
    for e in events:
        (single,) = decode_record(encode_event(e), NOW)
        assert single.event == e
    outcomes = decode_record(encode_envelope(events), NOW)
    assert [o.event for o in outcomes] == events


_member_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1, max_value=2),
    st.just(NOW - 5000),
    st.just(1.0),
    st.sampled_from(["", "web", "docs", "idle", "logout", "app_focus", "a b", "x\ny", "é"]),
    st.just("https://www.example.org/a"),
    st.just("ftp://x"),
    st.lists(st.just("v"), max_size=1),
)
_mutation = st.dictionaries(
    st.sampled_from(
        ["v", "event_id", "kind", "ts", "district_id", "student_id", "device_id", "app"]
        + ["sub_app", "url", "extra"]
    ),
    _member_values | st.just(...),
    max_size=2,
)


def assert_paths_agree(raw: bytes, window: tuple[int, int]) -> list[int]:
    """Every way of decoding an envelope gives the per-member path's outcomes; returns the members
    the column-wise path named for the per-member path."""
    expected = decoder.envelope_per_member(orjson.loads(raw), *window)
    assert decoder.decode_record_within(raw, *window) == expected
    events, notes = decoder.decode_split_within(raw, *window)
    assert events == [o.event for o in expected if o.event is not None]
    assert notes == [o for o in expected if o.event is None or o.dropped_fields]
    fast_events, named = envelope_columns.envelope_split(orjson.loads(raw), *window)
    assert named == sorted(set(named))
    accepted = [o for o in expected if o.source_index not in named]
    assert all(o.event is not None and not o.dropped_fields for o in accepted)
    assert fast_events == [o.event for o in accepted]
    return named


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_mutation, st.just({})), min_size=1, max_size=6), st.booleans())
def test_envelope_fast_path_equals_per_member_path(
    mutations: list[dict[str, Any]], odd_member: bool
) -> None:
    members: list[Any] = [event(**{"event_id": f"e{i}", **m}) for i, m in enumerate(mutations)]
    if odd_member:
        members.append("v")  # a string member whose characters look like keys
    raw = orjson.dumps(members)
    window = (NOW - 72 * 3_600_000, NOW + 300_000)
    assert decode_record(raw, NOW) == decoder.envelope_per_member(orjson.loads(raw), *window)
    named = assert_paths_agree(raw, window)
    if all(not m for m in mutations) and not odd_member:
        assert named == []  # plain valid envelopes are accepted whole, column by column


@pytest.mark.parametrize(
    "members",
    [
        # idle without app beside active events; an idle with an empty app is invalid
        [event(), event(event_id="e2", kind="idle", app=...), event(event_id="e3", kind="logout")],
        [event(), event(event_id="e2", kind="idle", app="")],
        [event(), event(event_id="e2", kind="heartbeat", app=...)],
        # web urls (cached or not, one too long to cache), urls on other apps, a bad one
        [event(app="web", url="https://www.a.org/x"), event(event_id="e2", sub_app="u1")],
        [event(app="web", url="https://b.org/" + "p" * 300), event(event_id="e2")],
        [event(app="web", url="https://c.org/"), event(event_id="e2", url="https://d.org/")],
        [event(url="x" * 3000), event(event_id="e2")],
        [event(url=None), event(event_id="e2", app="web", url="https://e.org/")],
        [event(app="web", url="ftp://f.org/"), event(event_id="e2")],
        [event(app="web", url=["https://g.org/"]), event(event_id="e2")],
        # an extra field in place of a missing optional one
        [event(extra=1), event(event_id="e2", kind="idle", app=...)],
        [event(event_id=""), event(event_id="e2")],
        [event(v=True), event(event_id="e2")],
        [event(ts=float(NOW)), event(event_id="e2")],
        # unhashable values where the columns are looked up in sets
        [event(kind=["idle"], app=...), event(event_id="e2")],
        [event(student_id={"a": 1}), event(event_id="e2", device_id=["x"])],
        [event(event_id=["e"]), event(event_id="e2", sub_app=None)],
    ],
)
def test_envelope_fast_path_equals_per_member_path_on_edge_cases(
    members: list[dict[str, Any]],
) -> None:
    raw = orjson.dumps(members)
    window = (NOW - 72 * 3_600_000, NOW + 300_000)
    for _ in range(2):  # the second time with the url cache filled
        assert decode_record(raw, NOW) == decoder.envelope_per_member(orjson.loads(raw), *window)
        assert_paths_agree(raw, window)


@pytest.mark.parametrize("odd", [None, 1, 1.5, True, "v", ["v"], [], {}, {"v": 1}])
def test_envelope_column_reads_leave_non_objects_to_the_per_member_path(odd: Any) -> None:
    """The fast path reads each required field as a column; a member that is not a full object
    is named for the per-member path (never raises, never accepted), the others stay accepted."""
    members = [event(), odd, event(event_id="e3")]
    window = (NOW - 72 * 3_600_000, NOW + 300_000)
    events, named = envelope_columns.envelope_split(orjson.loads(orjson.dumps(members)), *window)
    assert named == [1] and len(events) == 2
    outcomes = decode_record(orjson.dumps(members), NOW)
    assert [o.event is not None for o in outcomes] == [True, False, True]
    assert_paths_agree(orjson.dumps(members), window)
