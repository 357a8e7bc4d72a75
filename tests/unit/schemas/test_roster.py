"""Roster records of CONTRACT §3."""

from __future__ import annotations

import pytest

from schemas.roster import (
    RosterError,
    RosterRecord,
    decode_roster,
    make_record,
    parse_roster_key,
    roster_key,
)


def test_round_trip_and_tombstone() -> None:
    record = make_record("Ada Lovelace", ["c-101", "c-205", "c-101"])
    assert record == RosterRecord("Ada Lovelace", ("c-101", "c-205"))
    assert decode_roster(record.encode()) == record
    assert decode_roster(None) is None


def test_extra_fields_are_not_kept() -> None:
    record = decode_roster(b'{"name": "Ada", "classes": [], "email": "ada@example.org"}')
    assert record == RosterRecord("Ada", ())
    assert b"email" not in record.encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b"[]",
        b'{"name": "Ada"}',
        b'{"name": "", "classes": []}',
        b'{"name": 3, "classes": []}',
        b'{"name": "Ada", "classes": "c-101"}',
        b'{"name": "Ada", "classes": ["c 101"]}',
        b'{"name": "Ada", "classes": [101]}',
    ],
)
def test_invalid_records(raw: bytes) -> None:
    with pytest.raises(RosterError):
        decode_roster(raw)


def test_keys() -> None:
    assert roster_key("d1", "s-1") == b"d1:s-1"
    assert parse_roster_key(b"d1:s-1") == ("d1", "s-1")
    with pytest.raises(RosterError):
        roster_key("d:1", "s")
    with pytest.raises(RosterError):
        parse_roster_key(b"no-colon")
