"""Every example payload through the decoder, and the JSON Schemas agreeing with the decoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decoder import Limits, Reason, decode_record
from schemas.roster import RosterError, decode_roster
from tests.unit.schemas.jsonschema_subset import is_valid

ROOT = Path(__file__).resolve().parents[3] / "schemas"
EXAMPLES = ROOT / "examples"
NOW_MS = 1_764_378_000_000  # one hour after the examples' event times (see examples/README.md)
EVENT_SCHEMA = orjson.loads((ROOT / "jsonschema" / "device-activity-event.v1.json").read_bytes())
ROSTER_SCHEMA = orjson.loads((ROOT / "jsonschema" / "roster-record.v1.json").read_bytes())
# Rules the schema cannot express (size, the time window relative to "now", JSON syntax itself):
# for these examples the schema accepts what the decoder rejects. Anything else must agree.
SCHEMA_GAPS = {"too_large", "ts_in_future", "ts_too_old", "not_json"}


def _files(folder: str) -> list[Path]:
    files = sorted((EXAMPLES / folder).glob("*.json"))
    assert files, f"no examples in {folder}"
    return files


def _ids(files: list[Path]) -> list[str]:
    return [f.stem for f in files]


VALID = _files("device-activity/valid")
INVALID = _files("device-activity/invalid")


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_example_decodes_without_rejection(path: Path) -> None:
    outcomes = decode_record(path.read_bytes(), NOW_MS, Limits())
    assert outcomes
    assert [o.rejection for o in outcomes] == [None] * len(outcomes)
    assert all(o.event is not None and o.raw is None for o in outcomes)


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_example_is_rejected_with_its_file_name_as_reason(path: Path) -> None:
    raw = path.read_bytes()
    outcomes = decode_record(raw, NOW_MS, Limits())
    assert len(outcomes) == 1
    (outcome,) = outcomes
    assert outcome.event is None
    assert outcome.rejection is not None
    assert outcome.rejection.reason == Reason(path.stem)
    assert outcome.source_index == -1
    assert outcome.raw == raw  # the DLQ gets the original bytes of a single-event record


def test_every_decoder_reason_has_an_example() -> None:
    collector_only = {Reason.WRONG_DISTRICT}
    assert {Reason(p.stem) for p in INVALID} == set(Reason) - collector_only


def test_web_example_turns_url_into_sub_app_and_drops_it() -> None:
    (outcome,) = decode_record(
        (EXAMPLES / "device-activity/valid/web_with_url.json").read_bytes(), NOW_MS
    )
    assert outcome.event is not None
    assert outcome.event.app == "web"
    assert outcome.event.sub_app == "khanacademy.org"
    assert "khanacademy.org/math" not in repr(outcome)


def test_extra_fields_example_reports_dropped_field_names() -> None:
    (outcome,) = decode_record(
        (EXAMPLES / "device-activity/valid/extra_fields_dropped.json").read_bytes(), NOW_MS
    )
    assert outcome.dropped_fields == ("email", "ip", "location", "student_name")
    assert "Ada" not in repr(outcome.event)


def test_mixed_envelope_rejects_only_the_bad_member() -> None:
    path = EXAMPLES / "device-activity/mixed/envelope_one_bad_member.json"
    members = orjson.loads(path.read_bytes())
    outcomes = decode_record(path.read_bytes(), NOW_MS)
    assert [o.source_index for o in outcomes] == [0, 1, 2]
    assert [o.rejection.reason if o.rejection else None for o in outcomes] == [
        None,
        Reason.UNKNOWN_KIND,
        None,
    ]
    assert outcomes[1].raw == orjson.dumps(members[1])
    assert [o.event.event_id for o in outcomes if o.event] == ["evt-m-1", "evt-m-3"]


def _decoder_accepts(raw: bytes) -> bool:
    return all(o.rejection is None for o in decode_record(raw, NOW_MS))


EVENT_FILES = VALID + INVALID + _files("device-activity/mixed")


@pytest.mark.parametrize("path", EVENT_FILES, ids=_ids(EVENT_FILES))
def test_event_schema_agrees_with_decoder(path: Path) -> None:
    raw = path.read_bytes()
    decoder_ok = _decoder_accepts(raw)
    if path.stem in SCHEMA_GAPS:
        assert not decoder_ok
        if path.stem != "not_json":
            assert is_valid(orjson.loads(raw), EVENT_SCHEMA)
        return
    assert is_valid(orjson.loads(raw), EVENT_SCHEMA) == decoder_ok


ROSTER_FILES = _files("roster/valid") + _files("roster/invalid")


@pytest.mark.parametrize("path", ROSTER_FILES, ids=_ids(ROSTER_FILES))
def test_roster_examples_decode_and_agree_with_schema(path: Path) -> None:
    expected_valid = path.parent.name == "valid"
    try:
        decode_roster(path.read_bytes())
        decoded = True
    except RosterError:
        decoded = False
    assert decoded == expected_valid
    assert is_valid(orjson.loads(path.read_bytes()), ROSTER_SCHEMA) == expected_valid


# Property: on mutations of a valid event (inside the time window, small), schema == decoder.
_BASE: dict[str, Any] = orjson.loads(
    (EXAMPLES / "device-activity/valid/heartbeat.json").read_bytes()
)
_FIELDS = ["v", "event_id", "kind", "ts", "district_id", "student_id", "device_id", "app"]
_FIELDS += ["sub_app", "url", "extra"]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=3),
    st.just(1_764_374_400_000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        ["", "web", "docs", "heartbeat", "idle", "logout", "app_focus", "a.b", "a b", "x" * 65]
    ),
    st.sampled_from(
        [
            "https://www.example.org/p?q=1",
            "http://EXAMPLE.org:8080",
            "https://[::1]/x",
            "ftp://example.org",
            "https://exa mple.org/",
            "https://",
            "https://a..b/",
            "mailto:x@example.org",
        ]
    ),
    st.text(max_size=70),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=4),
    st.sets(st.sampled_from(_FIELDS), max_size=2),
)
def test_schema_and_decoder_agree_on_mutated_events(
    changes: dict[str, Any], removed: set[str]
) -> None:
    event = {**_BASE, **changes}
    for name in removed:
        event.pop(name, None)
    raw = orjson.dumps(event)
    ts = event.get("ts")
    # The time window is one of the SCHEMA_GAPS: the schema cannot see "now".
    in_window = not (type(ts) is int and not NOW_MS - 72 * 3_600_000 <= ts <= NOW_MS + 300_000)
    assert (is_valid(event, EVENT_SCHEMA) and in_window) == _decoder_accepts(raw), event
