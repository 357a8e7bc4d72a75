"""Envelopes filled per partition: full ones leave at once, in order, within the §2a limits."""

from __future__ import annotations

import orjson

from producers.envelopes import EnvelopeBuilder
from schemas.decoder import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_EVENTS


def _member(partition: int, n: int, pad: int = 0) -> bytes:
    return orjson.dumps({"p": partition, "n": n, "pad": "x" * pad})


def test_full_envelopes_leave_at_once_and_flush_sends_the_rest_in_order() -> None:
    builder = EnvelopeBuilder[int]()
    sent: list[tuple[int, bytes | None, bytes, list[int]]] = []
    counter = 0
    for chunk in range(7):  # 700 members per chunk, partitions 0..2 (partition 2 every 3rd)
        partitions = [0 if i % 3 == 0 else 1 if i % 3 == 1 else 2 for i in range(700)]
        members = list(range(counter, counter + 700))
        counter += 700
        full = builder.add(
            partitions, members, [_member(p, m) for p, m in zip(partitions, members, strict=True)]
        )
        assert all(len(r[3]) == MAX_ENVELOPE_EVENTS for r in full), chunk
        sent += full
    assert len(sent) == 3  # each partition got 1,631 to 1,638 members: one full envelope each
    rest = builder.flush()
    assert sorted(r[0] for r in rest) == [0, 1, 2] and builder.flush() == []
    sent += rest
    for partition in (0, 1, 2):
        records = [r for r in sent if r[0] == partition]
        members = [m for r in records for m in r[3]]
        assert members == [m for m in range(counter) if (m % 700) % 3 == partition]
        for _, key, value, record_members in records:
            assert key is None
            decoded = orjson.loads(value)
            assert [d["n"] for d in decoded] == record_members
            assert {d["p"] for d in decoded} == {partition}


def test_envelopes_are_cut_at_one_mebibyte_and_none_is_larger() -> None:
    pad = 3000  # about 330 members per MiB: envelopes are cut by size, not by count
    builder = EnvelopeBuilder[int]()
    members = list(range(1500))
    encoded = [_member(0, m, pad) for m in members]
    records = builder.add([0] * len(members), members, encoded) + builder.flush()
    assert len(records) > 3
    assert [m for r in records for m in r[3]] == members
    for _, _, value, record_members in records:
        assert len(value) <= MAX_ENVELOPE_BYTES
        assert [d["n"] for d in orjson.loads(value)] == record_members
    # Each envelope but the last is as full as the limit allows: one more member would not fit.
    for (_, _, value, _), (_, _, _, following) in zip(records, records[1:], strict=False):
        assert len(value) + len(encoded[following[0]]) + 1 > MAX_ENVELOPE_BYTES
