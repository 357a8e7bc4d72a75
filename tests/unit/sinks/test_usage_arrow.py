"""Partials → Arrow (sinks/usage_arrow.py): every row with its record, strings as one dictionary per batch."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from schemas.internal import UsagePartial, usage_header
from sinks.usage_arrow import SCHEMA, PartialRecord, partials_table


def _record(partition: int, offset: int, partial: UsagePartial) -> PartialRecord:
    return (partition, offset, *usage_header(partial.encode()))


def test_equal_strings_of_different_partials_share_one_dictionary_entry() -> None:
    a = UsagePartial(0, 1, 1, ((60, "docs", "x", 1, 10), (60, "web", "x", 2, 20)))
    b = UsagePartial(0, 2, 2, ((120, "web", "y", 3, 30), (120, "docs", "x", 4, 40)))
    table = partials_table([_record(4, 7, a), _record(4, 8, b)])
    assert table.schema == SCHEMA
    app = table.column("app").combine_chunks()
    assert sorted(app.dictionary.to_pylist()) == ["docs", "web"]
    assert app.to_pylist() == ["docs", "web", "web", "docs"]
    assert table.column("sub_app").to_pylist() == ["x", "x", "y", "x"]
    assert table.column("src_offset").to_pylist() == [7, 7, 8, 8]


@pytest.mark.parametrize("seed", range(4))
def test_many_partials_of_every_size_give_exactly_their_rows_in_order(seed: int) -> None:
    """Sizes that put every section at an odd byte offset: the gather must not shift a byte."""
    rnd = random.Random(seed)
    strings = ["", "a", "ünï", "日本.jp", "z" * 300]
    records, want = [], []
    for offset in range(rnd.randrange(1, 300)):
        rows = tuple(
            (rnd.randrange(2**32), rnd.choice(strings), rnd.choice(strings) + str(j % 3),
             rnd.randrange(2**64), rnd.randrange(1, 2**64))
            for j in range(rnd.choice([0, 1, 2, 7, 40]))
        )  # fmt: skip
        partition = rnd.randrange(8)
        records.append(_record(partition, offset, UsagePartial(partition, offset, offset, rows)))
        want += [(*row, partition, offset) for row in rows]
    table = partials_table(records)
    assert [tuple(r.values()) for r in table.to_pylist()] == want
    if want:
        subs = table.column("sub_app").combine_chunks().dictionary.to_pylist()
        assert len(subs) == len(set(subs))


def test_no_rows_is_an_empty_table_of_the_schema() -> None:
    empty = UsagePartial(0, 0, 0, ())
    assert partials_table([]) == SCHEMA.empty_table()
    assert partials_table([_record(0, 0, empty)]).num_rows == 0
    assert pa.types.is_dictionary(partials_table([]).schema.field("app").type)
