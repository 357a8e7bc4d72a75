"""The column-wise envelope path names exactly the members it cannot accept, and the decoder's answer
for a mixed envelope is the per-member path's, member by member: reasons, raw bytes, dropped fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import decoder, envelope_columns
from schemas.decoder import Reason

NOW = 1_764_378_000_000
WINDOW = (NOW - 72 * 3_600_000, NOW + 300_000)

Breakage = Callable[[dict[str, Any]], None]


def _set(name: str, value: Any) -> Breakage:
    return lambda m: m.__setitem__(name, value)


def _drop(name: str) -> Breakage:
    return lambda m: m.pop(name, None)


def _web(url: Any) -> Breakage:
    return lambda m: m.update(app="web", url=url)


# One breakage per member; each gives the reason beside it (or, for None, a valid member with
# dropped fields, or one whose ignored url must be measured).
BREAKAGES: list[tuple[Breakage, Reason | None]] = [
    (lambda m: None, None),
    (_set("v", 2), Reason.UNSUPPORTED_VERSION),
    (_set("v", 1.0), Reason.UNSUPPORTED_VERSION),
    (_set("v", True), Reason.UNSUPPORTED_VERSION),
    (_drop("v"), Reason.MISSING_FIELD),
    (_set("kind", "scroll"), Reason.UNKNOWN_KIND),
    (_set("kind", ["idle"]), Reason.WRONG_TYPE),
    (_drop("kind"), Reason.MISSING_FIELD),
    (_set("event_id", "a b"), Reason.BAD_EVENT_ID),
    (_set("event_id", ""), Reason.BAD_EVENT_ID),
    (_set("event_id", "é"), Reason.BAD_EVENT_ID),
    (_set("event_id", 7), Reason.WRONG_TYPE),
    (_set("ts", float(NOW)), Reason.WRONG_TYPE),
    (_set("ts", str(NOW)), Reason.WRONG_TYPE),
    (_drop("ts"), Reason.MISSING_FIELD),
    (_set("ts", NOW + 86_400_000), Reason.TS_IN_FUTURE),
    (_set("ts", NOW - 100 * 3_600_000), Reason.TS_TOO_OLD),
    (_drop("student_id"), Reason.MISSING_FIELD),
    (_set("district_id", None), Reason.WRONG_TYPE),
    (_set("device_id", {"a": 1}), Reason.WRONG_TYPE),
    (_set("student_id", "s 1"), Reason.BAD_ID),
    (_set("device_id", "d" * 65), Reason.BAD_ID),
    (_set("app", ""), Reason.BAD_APP),
    (_set("app", "a" * 65), Reason.BAD_APP),
    (_set("app", 3), Reason.WRONG_TYPE),
    (lambda m: m.update(kind="heartbeat") or m.pop("app", None), Reason.MISSING_FIELD),
    (_set("sub_app", "s" * 129), Reason.BAD_SUB_APP),
    (_set("sub_app", None), Reason.WRONG_TYPE),
    (_web("notaurl"), Reason.BAD_URL),
    (_web("ftp://x.org/"), Reason.BAD_URL),
    (_web(["https://x.org/"]), Reason.WRONG_TYPE),
    (_set("url", "\u0001" * 2000), Reason.TOO_LARGE),  # ignored url, oversized once escaped
    (_set("extra", "x" * 9000), Reason.TOO_LARGE),
    (_set("extra", 1), None),  # valid, "extra" dropped and counted
    (lambda m: m.update(note=None, debug=[1]), None),
    (_set("url", "x" * 3000), None),  # ignored url, long but within 8 KiB
    (_web("https://www.Example.org:8080/p?q"), None),
]
_ODD_MEMBERS: list[Any] = [None, 1, "v", ["v"], {}, {"v": 1}]


def _member(i: int, shape: int) -> dict[str, Any]:
    member: dict[str, Any] = {
        "v": 1,
        "event_id": f"e-{i}",
        "kind": "heartbeat",
        "ts": NOW - 5000 + i,
        "district_id": "d-1",
        "student_id": f"s-{i % 7}",
        "device_id": f"dev-{i % 7}",
        "app": "docs",
    }
    if shape == 1:
        member.update(app="web", url=f"https://site{i % 3}.example.org/p/{i}")
    elif shape == 2:
        member["sub_app"] = f"unit-{i % 4}"
    elif shape == 3:
        member.update(kind="idle")
        del member["app"]
    return member


_plan = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.one_of(
            st.just(0), st.integers(0, len(BREAKAGES) - 1), st.integers(-len(_ODD_MEMBERS), -1)
        ),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(_plan)
def test_mixed_envelopes_get_the_per_member_answer(plan: list[tuple[int, int]]) -> None:
    members: list[Any] = []
    for i, (shape, b) in enumerate(plan):
        if b < 0:
            members.append(_ODD_MEMBERS[b])
            continue
        member = _member(i, shape)
        BREAKAGES[b][0](member)
        members.append(member)
    raw = orjson.dumps(members)
    expected = decoder.envelope_per_member(orjson.loads(raw), *WINDOW)
    for i, (_shape, b) in enumerate(plan):  # the breakages mean what they say
        got = expected[i].rejection
        if b < 0:
            odd_reason = Reason.MISSING_FIELD if type(members[i]) is dict else Reason.NOT_OBJECT
            assert got is not None and got.reason == odd_reason
        elif BREAKAGES[b][1] is not None:
            assert got is not None and got.reason == BREAKAGES[b][1]
    assert decoder.decode_record_within(raw, *WINDOW) == expected
    events, notes = decoder.decode_split_within(raw, *WINDOW)
    assert events == [o.event for o in expected if o.event is not None]
    assert notes == [o for o in expected if o.event is None or o.dropped_fields]
    fast_events, named = envelope_columns.envelope_split(orjson.loads(raw), *WINDOW)
    accepted = [o for o in expected if o.source_index not in named]
    assert all(o.event is not None and not o.dropped_fields for o in accepted)
    assert fast_events == [o.event for o in accepted]
    clean = [i for i, (_s, b) in enumerate(plan) if b == 0]
    assert not set(clean) & set(named)  # a plain valid member is never sent to the slow path


def test_every_reason_of_a_member_is_covered() -> None:
    reasons = {r for _b, r in BREAKAGES if r is not None} | {Reason.NOT_OBJECT}
    record_level = {Reason.NOT_JSON, Reason.ENVELOPE_EMPTY, Reason.ENVELOPE_TOO_LARGE}
    assert reasons == set(Reason) - record_level - {Reason.WRONG_DISTRICT}


def test_single_event_records_split_like_their_outcomes() -> None:
    for b, _reason in BREAKAGES:
        member = _member(1, 1)
        b(member)
        raw = orjson.dumps(member)
        (outcome,) = decoder.decode_record_within(raw, *WINDOW)
        events, notes = decoder.decode_split_within(raw, *WINDOW)
        assert events == ([outcome.event] if outcome.event is not None else [])
        assert notes == ([outcome] if outcome.event is None or outcome.dropped_fields else [])
    for bad in (b"", b"[]", b"3", b"[" + b"{}," * 1000 + b"{}]"):
        failure = decoder.decode_record_within(bad, *WINDOW)
        assert decoder.decode_split_within(bad, *WINDOW) == ([], failure)
