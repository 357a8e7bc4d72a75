"""Partition snapshots: a whole partition state as zstd-compressed JSON, and back.

The document has not changed across releases (a rolling upgrade moves partitions both ways), and
:func:`decode_snapshot` also reads snapshots written before the presence ``ts`` refresh.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import zstandard

from schemas.clock import NEVER
from streams.partition import Params, PartitionState, new_state
from streams.presence import StudentPresence, View
from streams.usage import DeviceUsage


def _buffer_doc(device: DeviceUsage) -> list[tuple[Any, ...]]:
    """A device's buffer as snapshots have always written it: ``[ts, q, active, app, sub_app]``
    entries in buffer order.

    ``q`` is the entry's position: it sorts the entries in the buffer's order (the arrival order of
    equal ``ts``) and is below the book's ``seq``, so every release reading ``q`` as an arrival
    number reads this snapshot right (a rolling upgrade moves partitions both ways).
    """
    if device.ts is None or device.labels is None:
        return []
    return [
        (t, q, *label) for q, (t, label) in enumerate(zip(device.ts, device.labels, strict=True))
    ]


_SNAPSHOT_ROWS = 1024  # students or devices serialised at a time


def _json_rows(rows: Iterable[list[Any]]) -> Iterator[bytes]:
    """The JSON of ``rows`` as the members of an array, ``_SNAPSHOT_ROWS`` at a time.

    Only one chunk of rows exists at a time, so encoding a large partition does not hold a second,
    transient copy of its state in memory.
    """
    chunk: list[list[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _SNAPSHOT_ROWS:
            yield orjson.dumps(chunk)[1:-1]
            chunk.clear()
    if chunk:
        yield orjson.dumps(chunk)[1:-1]


def encode_snapshot(state: PartitionState) -> bytes:
    """Serialise a partition state (zstd-compressed JSON, the same document as ever)."""
    head = {
        "p": state.partition,
        "act_next": state.act_next,
        "roster_next": state.roster_next,
        "ticks": state.ticks,
        "last_close_ms": state.last_close_ms,
        "seq": state.usage._seq,
        "late": state.usage.late_events,
    }
    students = (
        [s.district_id, s.student_id, s.name, s.classes, s.ts, s.kind, s.app, s.sub_app,
         s.tie_ids, tuple(s.shown), s.shown_ts, s.shown_at]
        for s in state.presence.states.values()
    )  # fmt: skip
    devices = (
        [k, _buffer_doc(d), d.max_ts, orjson.Fragment(d.seen_json()), d.attributed_until,
         d.last_arrival_ms]
        for k, d in state.usage.devices.items()
    )  # fmt: skip
    doc = b"".join(
        [
            orjson.dumps(head)[:-1],
            b',"students":[',
            b",".join(_json_rows(students)),
            b'],"devices":[',
            b",".join(_json_rows(devices)),
            b"]}",
        ]
    )
    return zstandard.ZstdCompressor(level=1).compress(doc)


def decode_snapshot(raw: bytes, params: Params) -> PartitionState:
    """Rebuild a partition state from :func:`encode_snapshot` output."""
    doc = orjson.loads(zstandard.ZstdDecompressor().decompress(raw))
    state = new_state(doc["p"], params)
    state.act_next, state.roster_next = doc["act_next"], doc["roster_next"]
    state.ticks, state.last_close_ms = doc["ticks"], doc["last_close_ms"]
    state.usage._seq, state.usage.late_events = doc["seq"], doc["late"]
    book = state.presence
    intern = sys.intern
    for d, s, name, classes, ts, kind, app, sub, ties, shown, *emitted in doc["students"]:
        # snapshots before the ts refresh lack (shown_ts, shown_at): treat the ts as emitted
        shown_ts, shown_at = emitted if emitted else (ts, NEVER)
        st = StudentPresence(
            d, s, name, tuple(classes), ts, kind, intern(app), intern(sub), tuple(ties),
            View(*shown), shown_ts, shown_at,
        )  # fmt: skip
        book.restore(f"{d}:{s}", st)
    devices, students = state.usage.devices, book.states
    for (d, s, device), buf, max_ts, seen, until, arrival in doc["devices"]:
        student = students.get(f"{d}:{s}")
        if student is not None:  # share the id strings with the presence state
            d, s = student.district_id, student.student_id
        # The entries are in buffer order; their arrival numbers q are not needed (see _buffer_doc).
        buffered = [(t, a, app, sub) for t, _q, a, app, sub in buf]
        devices[(d, s, device)] = DeviceUsage(buffered, max_ts, seen, until, arrival)
    return state
