"""Formats of the internal topics between the workers and the sinks (not part of the public contract).

Presence changes (topic ``Settings.topic_presence``, compacted, key ``{district_id}:{student_id}``): one JSON
object per change of what a teacher sees, or of the student's roster entry.

Usage partials (topic ``Settings.topic_usage_cells``): the rows ``(minute_epoch_s, app, sub_app, student_token,
active_ms)`` made from the source offsets ``src = (partition, first_offset, last_offset)``, in one of two wire
formats, told apart by their first bytes:

- format 1 (JSON, the previous release): ``{"src": [partition, first_offset, last_offset], "rows": [[minute_epoch_s,
  app, sub_app, student_token, active_ms], ...]}``;
- format 2 (written since): columnar binary, laid out at ``V2_SECTIONS`` below, so that the ClickHouse sink turns
  whole columns of many partials into Arrow arrays without touching a row in Python.

Readers accept both, so workers and sinks can be upgraded one at a time — the sinks first: a sink of the previous
release stops on a format-2 record (an undecodable record is a permanent error) rather than misreading it.

Rows are already de-identified: ``student_token`` is a keyed hash under a daily key that is destroyed after the
day closes; no district, school, student or device identifier is in this topic.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, count, pairwise
from typing import Any, NamedTuple

import orjson


class InternalFormatError(ValueError):
    """An internal record does not have the shape this module writes; a bug, never user input."""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """What the Redis sink writes for one student (CONTRACT §4).

    ``deleted`` means the student left the roster (tombstone) or was purged: the sink deletes the presence hash
    and removes the student from ``classes_remove``. Otherwise the sink writes the hash (unless Redis already
    holds a newer ``ts``), adds the student to ``classes_add`` and removes them from ``classes_remove``.
    """

    district_id: str
    student_id: str
    name: str
    online: bool
    app: str
    sub_app: str
    ts: int
    classes_add: tuple[str, ...] = ()
    classes_remove: tuple[str, ...] = ()
    deleted: bool = False

    @property
    def key(self) -> bytes:
        return f"{self.district_id}:{self.student_id}".encode()

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "district_id": self.district_id,
                "student_id": self.student_id,
                "name": self.name,
                "online": self.online,
                "app": self.app,
                "sub_app": self.sub_app,
                "ts": self.ts,
                "classes_add": list(self.classes_add),
                "classes_remove": list(self.classes_remove),
                "deleted": self.deleted,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> PresenceChange:
        try:
            obj: dict[str, Any] = orjson.loads(raw)
            return cls(
                district_id=obj["district_id"],
                student_id=obj["student_id"],
                name=obj["name"],
                online=bool(obj["online"]),
                app=obj["app"],
                sub_app=obj["sub_app"],
                ts=int(obj["ts"]),
                classes_add=tuple(obj.get("classes_add", ())),
                classes_remove=tuple(obj.get("classes_remove", ())),
                deleted=bool(obj.get("deleted", False)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InternalFormatError(f"bad presence change: {exc}") from exc


# One de-identified usage row: (minute_epoch_s, app, sub_app, student_token, active_ms)
UsageRow = tuple[int, str, str, int, int]

# Usage partial wire formats. Format 1 is JSON (see the module doc); format 2, written since, is columnar binary
# and starts with ``V2_PREFIX``: a NUL byte, which no JSON text can start with, then "UP", then the format
# number. Every integer is little-endian. The fixed header (``V2_HEAD``) is followed by ``V2_SECTIONS`` in order.
# Each section's size is linear in the header's counts; the dictionaries list each distinct app / sub_app in
# order of first appearance (so the same rows always give the same bytes), and each row holds an index into its
# partial's own dictionaries. A sink gathers each section over many partials and hands it to Arrow as it is.
V2_PREFIX = b"\x00UP\x02"
# prefix, partition, first_offset, last_offset, rows, apps, subs, app_bytes, sub_bytes
V2_HEAD = struct.Struct("<4sIqqIIIII")
_BIG_ENDIAN_HOST = sys.byteorder == "big"
if array("I").itemsize != 4 or array("Q").itemsize != 8:
    raise ImportError("format 2 needs array codes I and Q of 4 and 8 bytes")


class UsageHeader(NamedTuple):
    """The header of a format-2 partial, with the partial's bytes (see :func:`usage_header`)."""

    raw: bytes  # the whole partial in format 2
    partition: int
    first_offset: int
    last_offset: int
    rows: int
    apps: int  # entries of the app dictionary
    subs: int  # entries of the sub_app dictionary
    app_bytes: int  # UTF-8 bytes of the app dictionary
    sub_bytes: int  # UTF-8 bytes of the sub_app dictionary


# The header counts a section's size is made of, and its bytes per unit of each:
# (name, struct code of one item or "s" for UTF-8, per row, per app, per sub, per app byte, per sub byte)
V2_SECTIONS: tuple[tuple[str, str, int, int, int, int, int], ...] = (
    ("minute", "I", 4, 0, 0, 0, 0),  # epoch seconds of the UTC minute
    ("token", "Q", 8, 0, 0, 0, 0),  # student token
    ("active_ms", "Q", 8, 0, 0, 0, 0),
    ("app_index", "I", 4, 0, 0, 0, 0),  # into the app dictionary
    ("sub_index", "I", 4, 0, 0, 0, 0),  # into the sub_app dictionary
    ("app_sizes", "I", 0, 4, 0, 0, 0),  # UTF-8 bytes of each app dictionary entry
    ("sub_sizes", "I", 0, 0, 4, 0, 0),
    ("app_utf8", "s", 0, 0, 0, 1, 0),  # the app dictionary entries, concatenated
    ("sub_utf8", "s", 0, 0, 0, 0, 1),
)


def _section_sizes(rows: int, apps: int, subs: int, app_bytes: int, sub_bytes: int) -> list[int]:
    """Byte size of each of :data:`V2_SECTIONS` for these header counts."""
    return [
        r * rows + a * apps + s * subs + ab * app_bytes + sb * sub_bytes
        for _, _, r, a, s, ab, sb in V2_SECTIONS
    ]


def _packed(code: str, values: Iterable[int]) -> bytes:
    """``values`` as little-endian ``array`` items (``"I"``: uint32, ``"Q"``: uint64); OverflowError / TypeError
    on a value that is not an integer of that range."""
    items = array(code, values)
    if _BIG_ENDIAN_HOST:
        items.byteswap()
    return items.tobytes()


def _pack_dictionary(values: tuple[str, ...]) -> tuple[dict[str, int], bytes, bytes]:
    """Distinct values in order of first appearance → (value → index, sizes section, UTF-8 section)."""
    index = dict(zip(dict.fromkeys(values), count()))
    utf8 = list(map(str.encode, index))  # TypeError on anything but a str
    return index, _packed("I", map(len, utf8)), b"".join(utf8)


def _encode_v2(partition: int, first: int, last: int, rows: Sequence[Sequence[Any]]) -> bytes:
    """Format 2 of a partial. Raises ``struct.error`` / ``TypeError`` / ``OverflowError`` / ``ValueError`` on a
    value that does not fit its field."""
    n = len(rows)
    if n:
        # strict: every row has exactly five fields
        minute, app, sub_app, token, active = zip(*rows, strict=True)
    else:
        minute = app = sub_app = token = active = ()
    apps, app_sizes, app_utf8 = _pack_dictionary(app)
    subs, sub_sizes, sub_utf8 = _pack_dictionary(sub_app)
    head = V2_HEAD.pack(
        V2_PREFIX, partition, first, last, n, len(apps), len(subs), len(app_utf8), len(sub_utf8)
    )
    return b"".join(  # in the order of V2_SECTIONS
        (
            head,
            _packed("I", minute),
            _packed("Q", token),
            _packed("Q", active),
            _packed("I", map(apps.__getitem__, app)),
            _packed("I", map(subs.__getitem__, sub_app)),
            app_sizes,
            sub_sizes,
            app_utf8,
            sub_utf8,
        )
    )


def _header_v2(raw: bytes) -> UsageHeader:
    """The header of a format-2 partial; InternalFormatError if its sections do not add up to its size."""
    try:
        _, partition, first, last, n, apps, subs, app_bytes, sub_bytes = V2_HEAD.unpack_from(raw)
    except struct.error as exc:
        raise InternalFormatError(f"bad usage partial: short header: {exc}") from exc
    # the sum of _section_sizes, spelled out: this runs once per record in the sink
    want = V2_HEAD.size + 28 * n + 4 * (apps + subs) + app_bytes + sub_bytes
    if len(raw) != want:
        raise InternalFormatError(f"bad usage partial: {len(raw)} bytes, its header says {want}")
    if (n == 0) != (apps == 0) or (n == 0) != (subs == 0):
        raise InternalFormatError("bad usage partial: dictionaries do not match the rows")
    return UsageHeader(raw, partition, first, last, n, apps, subs, app_bytes, sub_bytes)


def _header_v1(raw: bytes) -> UsageHeader:
    """A format-1 (JSON) partial, checked strictly (no coercion: a bug upstream must not become data) and
    re-encoded in format 2."""
    try:
        obj: dict[str, Any] = orjson.loads(raw)
        partition, first, last = obj["src"]
        rows = obj["rows"]
        if type(rows) is not list or not all(type(r) is list and len(r) == 5 for r in rows):
            raise TypeError("rows must be lists of five values")
        if not all(type(v) is int for r in rows for v in (r[0], r[3], r[4])):
            raise TypeError("minute, student_token and active_ms must be integers")
        if not all(type(v) is int for v in (partition, first, last)):
            raise TypeError("src must be three integers")
        raw2 = _encode_v2(partition, first, last, rows)
    except (
        orjson.JSONDecodeError,
        KeyError,
        TypeError,
        ValueError,
        OverflowError,
        struct.error,
    ) as exc:
        raise InternalFormatError(f"bad usage partial: {exc}") from exc
    return _header_v2(raw2)


def usage_header(raw: bytes) -> UsageHeader:
    """Any usage partial (format 1 or 2) as format 2 with its header; InternalFormatError if it is neither.

    Only sizes are checked, in constant time per record. A reader of the sections (:func:`usage_sections`)
    must still check that each dictionary's sizes add up to its UTF-8 bytes, that these are UTF-8, and that
    every index is below its dictionary's length; the ClickHouse sink does that over whole columns of many
    partials at once. Format 1 is read because a worker of the previous release may still write it during an
    upgrade.
    """
    if raw[:4] == V2_PREFIX:
        return _header_v2(raw)
    if raw[:1] == b"{":
        return _header_v1(raw)
    raise InternalFormatError(f"bad usage partial: unknown format {bytes(raw[:4])!r}")


def usage_sections(head: UsageHeader) -> dict[str, memoryview]:
    """The sections of a format-2 partial by :data:`V2_SECTIONS` name (views, nothing copied or checked)."""
    view = memoryview(head.raw)
    ends = accumulate(
        _section_sizes(head.rows, head.apps, head.subs, head.app_bytes, head.sub_bytes),
        initial=V2_HEAD.size,
    )
    return {name: view[a:b] for (name, *_), (a, b) in zip(V2_SECTIONS, pairwise(ends), strict=True)}


@dataclass(frozen=True, slots=True)
class UsagePartial:
    """A batch of usage rows produced from the source offsets ``first_offset..last_offset`` of one partition.

    ``src`` identifies the input the rows came from; with deterministic batching it lets the ClickHouse sink
    derive an insert deduplication token. :meth:`encode` writes wire format 2 (the same rows always give the
    same bytes); :meth:`decode` reads formats 1 and 2.
    """

    partition: int
    first_offset: int
    last_offset: int
    rows: tuple[UsageRow, ...]

    def encode(self) -> bytes:
        return _encode_v2(self.partition, self.first_offset, self.last_offset, self.rows)

    @classmethod
    def decode(cls, raw: bytes) -> UsagePartial:
        if raw[:4] == V2_PREFIX:
            return cls._decode_v2(raw)
        try:
            obj: dict[str, Any] = orjson.loads(raw)
            partition, first, last = obj["src"]
            rows = tuple(
                (int(m), str(a), str(s), int(t), int(ms)) for m, a, s, t, ms in obj["rows"]
            )
            return cls(int(partition), int(first), int(last), rows)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InternalFormatError(f"bad usage partial: {exc}") from exc

    @classmethod
    def _decode_v2(cls, raw: bytes) -> UsagePartial:
        head = _header_v2(raw)
        c = usage_sections(head)
        n = head.rows
        try:
            apps = _dictionary(c["app_sizes"], c["app_utf8"])
            subs = _dictionary(c["sub_sizes"], c["sub_utf8"])
            rows = tuple(
                zip(
                    struct.unpack(f"<{n}I", c["minute"]),
                    map(apps.__getitem__, struct.unpack(f"<{n}I", c["app_index"])),
                    map(subs.__getitem__, struct.unpack(f"<{n}I", c["sub_index"])),
                    struct.unpack(f"<{n}Q", c["token"]),
                    struct.unpack(f"<{n}Q", c["active_ms"]),
                    strict=True,
                )
            )
        except (IndexError, UnicodeDecodeError) as exc:
            raise InternalFormatError(f"bad usage partial: {exc}") from exc
        return cls(head.partition, head.first_offset, head.last_offset, rows)


def _dictionary(sizes: memoryview, utf8: memoryview) -> list[str]:
    """A format-2 dictionary section as its strings."""
    ends = list(accumulate(struct.unpack(f"<{len(sizes) // 4}I", sizes), initial=0))
    if ends[-1] != len(utf8):
        raise InternalFormatError("bad usage partial: dictionary sizes do not add up")
    return [str(utf8[a:b], "utf-8") for a, b in pairwise(ends)]
