"""Usage partial wire formats: format 2 round-trips and is deterministic, format 1 (JSON) is still read."""

from __future__ import annotations

import random
import struct

import orjson
import pytest

from schemas.internal import (
    V2_HEAD,
    InternalFormatError,
    UsagePartial,
    UsageRow,
    usage_header,
    usage_sections,
)

ROWS: tuple[UsageRow, ...] = (
    (1_767_225_600, "docs", "", 2**63 + 1, 60_000),
    (1_767_225_660, "web", "wikipedia.org", 7, 1_500),
    (1_767_225_600, "docs", "été", 2**64 - 1, 1),
)

# Exactly what the previous release's worker wrote for UsagePartial(2, 40, 47, ROWS) (format 1).
OLD_BYTES = (
    b'{"src":[2,40,47],"rows":[[1767225600,"docs","",9223372036854775809,60000],'
    b'[1767225660,"web","wikipedia.org",7,1500],'
    b'[1767225600,"docs","\xc3\xa9t\xc3\xa9",18446744073709551615,1]]}'
)

# The same partial in format 2, spelled out section by section (little-endian).
NEW_BYTES = b"".join(
    (
        b"\x00UP\x02",
        struct.pack(
            "<IqqIIIII", 2, 40, 47, 3, 2, 3, len(b"docsweb"), len("wikipedia.orgété".encode())
        ),
        struct.pack("<3I", 1_767_225_600, 1_767_225_660, 1_767_225_600),  # minute
        struct.pack("<3Q", 2**63 + 1, 7, 2**64 - 1),  # token
        struct.pack("<3Q", 60_000, 1_500, 1),  # active_ms
        struct.pack("<3I", 0, 1, 0),  # app index: docs, web, docs
        struct.pack("<3I", 0, 1, 2),  # sub index: "", wikipedia.org, été
        struct.pack("<2I", 4, 3),  # app sizes
        struct.pack("<3I", 0, 13, 5),  # sub sizes
        b"docsweb",
        b"wikipedia.org" + "été".encode(),
    )
)


def random_rows(rnd: random.Random, n: int) -> tuple[UsageRow, ...]:
    apps = ["docs", "web", "slides", "ünïcode", "x" * 64]
    subs = ["", "a.example", "b.example", "日本.jp", "y" * 128]
    return tuple(
        (
            rnd.randrange(2**32),
            rnd.choice(apps),
            rnd.choice(subs),
            rnd.randrange(2**64),
            rnd.randrange(1, 2**64),
        )
        for _ in range(n)
    )


def test_format_2_is_the_documented_layout() -> None:
    assert UsagePartial(2, 40, 47, ROWS).encode() == NEW_BYTES


def test_format_1_of_the_previous_release_decodes_to_the_same_partial() -> None:
    assert UsagePartial.decode(OLD_BYTES) == UsagePartial(2, 40, 47, ROWS)
    assert UsagePartial.decode(NEW_BYTES) == UsagePartial(2, 40, 47, ROWS)


def test_the_sink_reads_format_1_as_the_same_format_2_bytes() -> None:
    old, new = usage_header(OLD_BYTES), usage_header(NEW_BYTES)
    assert old == new
    assert old.raw == NEW_BYTES
    assert (old.partition, old.first_offset, old.last_offset, old.rows) == (2, 40, 47, 3)


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000])
def test_format_2_round_trips(n: int) -> None:
    rnd = random.Random(n)
    partial = UsagePartial(rnd.randrange(64), rnd.randrange(2**40), -1, random_rows(rnd, n))
    raw = partial.encode()
    assert UsagePartial.decode(raw) == partial
    # and a format-1 record of the same rows gives the very same bytes to the sink
    old = orjson.dumps({"src": [partial.partition, partial.first_offset, -1], "rows": partial.rows})
    assert usage_header(old).raw == raw


def test_encoding_is_deterministic() -> None:
    """A replayed batch must produce a byte-identical partial: the encoding depends on the rows only."""
    rnd = random.Random(7)
    rows = random_rows(rnd, 300)
    a = UsagePartial(1, 10, 20, rows).encode()
    b = UsagePartial(1, 10, 20, tuple(list(r) for r in rows)).encode()  # type: ignore[misc]
    assert a == b
    assert UsagePartial(1, 10, 20, rows[::-1]).encode() != a  # the order of the rows is kept


def test_sections_are_views_of_the_record() -> None:
    sections = usage_sections(usage_header(NEW_BYTES))
    assert bytes(sections["app_utf8"]) == b"docsweb"
    assert struct.unpack("<3Q", sections["active_ms"]) == (60_000, 1_500, 1)
    assert sum(len(v) for v in sections.values()) == len(NEW_BYTES) - V2_HEAD.size


@pytest.mark.parametrize(
    "row",
    [
        (60, "docs", "x", 1, -5),  # negative
        (60, "docs", "x", 1, 2**64),  # past UInt64
        (2**32, "docs", "x", 1, 5),  # past the minute's UInt32
        (60, "docs", 7, 1, 5),  # not a string
        (60, "docs", "x", None, 5),
        (60, "docs", "x", 1, 5.0),
        (60, "docs", "x", 1),  # short
    ],
)
def test_a_row_that_does_not_fit_is_not_encoded(row: tuple[object, ...]) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError, struct.error)):
        UsagePartial(0, 0, 0, ((60, "docs", "x", 1, 5), row)).encode()  # type: ignore[arg-type]


def _patched(raw: bytes, section: str, data: bytes) -> bytes:
    """``raw`` with the start of one section overwritten."""
    start = V2_HEAD.size
    for name, size in (
        (k, len(v)) for k, v in usage_sections(usage_header(raw)).items()
    ):  # sections in order
        if name == section:
            return raw[:start] + data + raw[start + len(data) :]
        start += size
    raise KeyError(section)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00UP\x02",  # header cut short
        NEW_BYTES[:-1],  # one byte missing
        NEW_BYTES + b"\x00",  # one byte too many
        b"\x00UP\x03" + NEW_BYTES[4:],  # a format this release does not know
        b"[1, 2]",
        _patched(NEW_BYTES, "sub_index", struct.pack("<I", 3)),  # past the sub dictionary
        _patched(NEW_BYTES, "app_sizes", struct.pack("<I", 5)),  # sizes past the bytes
        _patched(NEW_BYTES, "app_utf8", b"\xff"),  # not UTF-8
    ],
)
def test_a_broken_partial_is_refused(raw: bytes) -> None:
    with pytest.raises(InternalFormatError):
        UsagePartial.decode(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"rows": []}',
        b'{"src": [0, 0, 0], "rows": [[60, "a", "b", 1, 2], [60, "a", "b", 1]]}',
        b'{"src": [0, 0, 0], "rows": [[60, "a", "b", 1, 2, 3]]}',
        b'{"src": [0, 0, 0], "rows": [[60, "a", "b", 1, -2]]}',
        b'{"src": [0, 0, 0], "rows": [["60", "a", "b", 1, 2]]}',
        b'{"src": [0, 0, 0], "rows": [[60, "a", "b", 1, 2.5]]}',
        b'{"src": [0, 0, 0], "rows": [[60, "a", null, 1, 2]]}',
        b'{"src": [0, 0, 0], "rows": [[60, "a", "b", true, 2]]}',
        b'{"src": [0, "0", 0], "rows": []}',
        b"\x01garbage",
    ],
)
def test_the_sink_refuses_a_format_1_partial_it_would_have_to_coerce(raw: bytes) -> None:
    with pytest.raises(InternalFormatError):
        usage_header(raw)
