"""Buffered usage partials (wire format 2) → one Arrow table of ``app_minute_in``'s columns.

The ClickHouse sink hands a flush's partials here as plain tuples (:data:`PartialRecord`) and inserts the table
it gets back. No Python work is done per row or per section of a partial: the partials' bytes are joined once,
every section of :data:`~schemas.internal.V2_SECTIONS` is gathered from all of them by one Arrow ``take``, and
the columns are those bytes as they are (fixed-width sections) or built from them by Arrow kernels (strings,
source columns).

Promises: the table holds every row of every partial, in buffer order, each with the usage-cells partition and
offset of its record; a partial whose dictionaries or indexes are broken (sizes that do not add up to its
bytes, bytes that are not UTF-8, an index past its own dictionary) makes the whole call raise ValueError or an
ArrowException, never a table with a wrong row. The app and sub_app columns are dictionary-encoded with one
entry per distinct string of the batch (ClickHouse reads them into its ``String`` columns).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from itertools import accumulate

import pyarrow as pa
import pyarrow.compute as pc

from schemas.internal import V2_HEAD, V2_SECTIONS

# A buffered usage-cells record: its partition and offset in that topic, then its UsageHeader (format-2 bytes,
# src, counts). A plain tuple of ints and bytes: the garbage collector stops tracking it at once.
PartialRecord = tuple[int, int, bytes, int, int, int, int, int, int, int, int]

# Each partial's dictionaries index its own rows; the batch's strings become one dictionary of distinct values
# (few: the apps and sub-apps of a second), so the rows carry 4-byte indexes instead of copies of the strings.
STRINGS = pa.dictionary(pa.int32(), pa.large_string())

SCHEMA = pa.schema(
    [
        ("minute", pa.uint32()),
        ("app", STRINGS),
        ("sub_app", STRINGS),
        ("student_token", pa.uint64()),
        ("active_ms", pa.uint64()),
        ("src_partition", pa.uint32()),
        ("src_offset", pa.uint64()),
    ]
)

PerRow = Callable[[pa.Array], pa.Array]


def partials_table(records: Sequence[PartialRecord]) -> pa.Table:
    """The rows of ``records`` as one table of :data:`SCHEMA` (see the module doc; ValueError /
    ArrowException when a partial is broken)."""
    if not records:
        return SCHEMA.empty_table()
    partition, offset, raw, _, _, _, rows, apps, subs, app_bytes, sub_bytes = zip(
        *records, strict=True
    )
    n = sum(rows)
    if not n:
        return SCHEMA.empty_table()
    counts = [pa.array(c, pa.int64()) for c in (rows, apps, subs, app_bytes, sub_bytes)]
    sections = _sections(raw, counts)
    has_rows = pc.greater(counts[0], 0)  # a run may not be empty: partials without rows have none
    run_ends = pc.cumulative_sum(counts[0]).filter(has_rows)

    def per_row(per_record: pa.Array) -> pa.Array:
        """One value per record, repeated over its rows (run-end decoding, in C)."""
        ree = pa.RunEndEncodedArray.from_arrays(run_ends, per_record.filter(has_rows))
        return pc.run_end_decode(ree)

    arrays = [
        _fixed(sections["minute"], pa.uint32(), n),
        _strings(sections, "app", counts[1], counts[3], per_row, n),
        _strings(sections, "sub", counts[2], counts[4], per_row, n),
        _fixed(sections["token"], pa.uint64(), n),
        _fixed(sections["active_ms"], pa.uint64(), n),
        per_row(pa.array(partition, pa.uint32())),
        per_row(pa.array(offset, pa.uint64())),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _sections(raw: Sequence[bytes], counts: list[pa.Array]) -> dict[str, pa.Array]:
    """Each section of :data:`~schemas.internal.V2_SECTIONS`, gathered over all partials, as uint8 bytes.

    The joined bytes are cut into one binary array whose elements are, partial after partial, its head and each
    of its sections (offsets computed from the headers' counts); a single ``take`` reorders those elements
    section after section, so each section of the batch is one contiguous slice of the result. (A list view
    per section gathers the same bytes at ~0.25 µs per partial and section; a take costs a few ns.)
    """
    parts = 1 + len(V2_SECTIONS)  # the head, then the sections
    joined = b"".join(raw)
    start = pa.array(list(accumulate(map(len, raw), initial=0))[:-1], pa.int64())
    starts = [start]  # per part, where it begins in each partial (part-major)
    start = pc.add(start, V2_HEAD.size)
    for _, _, *per_unit in V2_SECTIONS:
        starts.append(start)
        terms = [pc.multiply(c, k) for c, k in zip(counts, per_unit, strict=True) if k]
        start = pc.add(start, reduce(pc.add, terms))
    offsets = pa.concat_arrays(
        [pc.take(pa.concat_arrays(starts), _transposed(len(raw), parts)), pa.array([len(joined)])]
    )
    elements = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(raw) * parts, [None, offsets.buffers()[1], pa.py_buffer(joined)]
    )
    gathered = pc.take(elements, _transposed(parts, len(raw)))
    ends = pa.Array.from_buffers(pa.int64(), len(gathered) + 1, [None, gathered.buffers()[1]])
    data = gathered.buffers()[2]
    sections: dict[str, pa.Array] = {}
    for i, (name, *_) in enumerate(V2_SECTIONS, start=1):
        a, b = ends[i * len(raw)].as_py(), ends[(i + 1) * len(raw)].as_py()
        sections[name] = pa.Array.from_buffers(pa.uint8(), b - a, [None, data.slice(a, b - a)])
    return sections


def _transposed(rows: int, cols: int) -> pa.Array:
    """For each position ``r * cols + c`` of a row-major ``rows × cols`` grid, the position ``c * rows + r``
    of the same cell in its transpose (int64 indexes for ``take``)."""
    at = pc.subtract(pc.cumulative_sum(pa.repeat(1, rows * cols)), 1)
    r = pc.divide(at, cols)  # integer division
    return pc.add(pc.multiply(pc.subtract(at, pc.multiply(r, cols)), rows), r)


def _fixed(section: pa.Array, type_: pa.DataType, n: int) -> pa.Array:
    """A gathered section (bytes, little-endian like the host: the sink checks it at start) as ``n`` values
    of ``type_``."""
    if len(section) != n * type_.byte_width:  # the sizes were checked on add: a guard
        raise ValueError(f"{len(section)} bytes for {n} values of {type_}")
    return pa.Array.from_buffers(type_, n, [None, section.buffers()[1].slice(section.offset)])


def _strings(
    sections: dict[str, pa.Array],
    name: str,
    entries: pa.Array,
    utf8_bytes: pa.Array,
    per_row: PerRow,
    n: int,
) -> pa.DictionaryArray:
    """The ``app`` (``name="app"``) or ``sub_app`` (``"sub"``) column, from ``entries`` and ``utf8_bytes`` (the
    size of each partial's dictionary) and the gathered sections.

    The partials' dictionaries form one string array; each row's index is checked against its own
    dictionary's size and shifted by the entries of the dictionaries before its own. Equal strings of
    different partials become one entry of the column's dictionary.
    """
    total = pc.sum(entries).as_py()
    sizes = _fixed(sections[f"{name}_sizes"], pa.uint32(), total).cast(pa.int64())
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(sizes)])
    ends = pc.cumulative_sum(entries)
    # Each partial's sizes must add up to its own bytes, or its strings would shift into its neighbour's.
    if not pc.take(offsets, ends).equals(pc.cumulative_sum(utf8_bytes)):
        raise ValueError(f"{name} dictionary sizes do not add up to its bytes")
    utf8 = sections[f"{name}_utf8"]
    dictionary = pa.Array.from_buffers(
        pa.large_string(), total, [None, offsets.buffers()[1], utf8.buffers()[1].slice(utf8.offset)]
    )
    dictionary.validate()  # offsets inside the bytes (they rise by construction)
    local = _fixed(sections[f"{name}_index"], pa.uint32(), n)
    if not pc.all(pc.less(local, per_row(entries))).as_py():
        raise ValueError(f"a {name} index past its partial's dictionary")
    distinct = pc.dictionary_encode(dictionary)
    # Every distinct string is checked once; a string that is not UTF-8 is among them like any other.
    distinct.dictionary.validate(full=True)
    index = pc.take(distinct.indices, pc.add(local, per_row(pc.subtract(ends, entries))))
    return pa.DictionaryArray.from_arrays(index, distinct.dictionary)
