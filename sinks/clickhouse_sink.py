"""ClickHouse sink: usage partials (internal usage-cells topic) → ``{db}.app_minute`` (CONTRACT §5).

Each flush is ONE insert of every buffered row into the Null-engine table ``{db}.app_minute_in``; two
materialized views turn that block into ``app_minute`` rows (``sum(active_ms)``, ``uniqState(student_token)``)
and into ``sink_progress`` (the highest usage-cells offset written, per partition).

Replaying input never adds to ``active_ms`` or ``students``, by these mechanisms:

- **Progress skip.** On every partition assignment the sink reads ``sink_progress`` and drops records at or below
  the offset already written. This covers a crash between insert and offset commit, a rebalance and a restart,
  however differently the replay happens to batch the records.
- **Repeated src.** The worker commits a batch's partial in one Kafka transaction with its intent and never
  re-sends it after a crash, so a committed copy is not expected. A worker of the release before transactions
  re-sent its last partial when it could not see it landed (byte-identical, same ``src``, a little later in
  the same usage-cells partition), and such records may still be in the topic after an upgrade. The sink
  remembers the ``src`` of the last :data:`SRC_MEMORY` records of each partition it buffered or wrote, and writes
  a later record repeating one as a single row that adds nothing but its offset to ``sink_progress``
  (:func:`_progress_carrier`), so the copy stays skipped after a crash between that insert and the commit. The
  memory itself does not survive a sink restart (``sink_progress`` keeps offsets, not srcs): a copy whose
  original was written before the sink restarted is not recognised.
- **Insert deduplication token.** Each insert carries ``insert_deduplication_token`` derived from the batch's
  identity (the usage-cells partitions and offset ranges it holds) and the target tables keep
  ``non_replicated_deduplication_window`` block ids, with ``deduplicate_blocks_in_dependent_materialized_views``
  so the views dedup too. A retried insert (same batch: e.g. a timeout after the server had written it, or a
  crash after ``app_minute`` but before ``sink_progress`` was written, then the same records replayed) is dropped
  by ClickHouse instead of added twice.

Transient failures (server down, timeouts) leave the buffer intact for the loop to retry;
a schema mismatch or an undecodable record raises :class:`~sinks.shape.PermanentSinkError`. Each flush returns
the rows it wrote and the replayed records it skipped since the last flush (:class:`~sinks.shape.FlushResult`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from typing import Any

import pyarrow as pa
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from schemas.internal import InternalFormatError, UsageHeader, UsagePartial, usage_header
from sinks.migrate import check_identifier
from sinks.shape import FlushResult, PermanentSinkError
from sinks.usage_arrow import PartialRecord, partials_table

log = logging.getLogger(__name__)

# ClickHouse error codes that retrying cannot fix: the table or its columns are not what we insert.
PERMANENT_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        8,  # THERE_IS_NO_COLUMN
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        47,  # UNKNOWN_IDENTIFIER
        53,  # TYPE_MISMATCH
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        70,  # CANNOT_CONVERT_TYPE
        81,  # UNKNOWN_DATABASE
        117,  # INCORRECT_DATA
        469,  # VIOLATED_CONSTRAINT
    }
)

# Recent srcs remembered per usage-cells partition (see the module doc). A re-sent partial of the release before
# transactions followed its original closely: it was re-sent only when not among the partition's last 64 records.
SRC_MEMORY = 4096


def _progress_carrier(copy: bytes) -> UsageHeader | None:
    """What the sink writes for a partial that repeats one it holds: its first row with no time.

    The row carries the copy's offset into ``sink_progress`` (so a restart between this insert and the offset
    commit skips the copy instead of adding it) and adds nothing: ``active_ms`` 0, and a student token the
    original already put into that cell's ``uniq`` state. None if the copy has no row (nothing to add anyway).
    """
    partial = UsagePartial.decode(copy)
    if not partial.rows:
        return None
    minute, app, sub_app, token, _ = partial.rows[0]
    src = (partial.partition, partial.first_offset, partial.last_offset)
    return usage_header(UsagePartial(*src, rows=((minute, app, sub_app, token, 0),)).encode())


def dedup_token(ranges: dict[int, tuple[int, int, int]]) -> str:
    """The insert deduplication token of a batch: its usage-cells ``partition → (first, last, count)`` ranges.

    Two batches get the same token exactly when they hold the same records of the topic.
    """
    ident = ";".join(f"{p}:{a}-{b}/{n}" for p, (a, b, n) in sorted(ranges.items()))
    return "usage-cells:" + hashlib.sha256(ident.encode()).hexdigest()[:40]


class ClickHouseUsageSink:
    """Buffers usage partials and writes them with one insert per flush (see the module doc)."""

    name = "clickhouse"

    def __init__(self, client: Client, database: str) -> None:
        if sys.byteorder != "little":  # Arrow reads format 2's little-endian sections as they are
            raise RuntimeError("the ClickHouse usage sink runs on little-endian hosts only")
        self.client = client
        self.db = check_identifier(database)
        self._written: dict[int, int] = {}  # partition → highest offset already in ClickHouse
        self._ranges: dict[int, tuple[int, int, int]] = {}
        self._records: list[PartialRecord] = []  # rows are never decoded here, only their header
        self._rows = 0
        self._replays = 0  # records skipped as already written, since the last flush
        # usage-cells partition → {src: offset of the record that carried it}, oldest first
        self._srcs: dict[int, dict[tuple[int, int, int], int]] = {}

    # --- the sink shape
    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        """Buffer the rows of one usage-cells record (skipped if ClickHouse already holds it)."""
        self.add_partial(record.partition, record.offset, record.value)

    def add_partial(self, partition: int, offset: int, value: bytes) -> None:
        """:meth:`add` for a record given by its parts.

        A format-2 partial costs a header check, whatever its row count; a format-1 (JSON) one, from a worker of
        the previous release, is converted to format 2 first. Dictionaries and indexes are checked over whole
        columns when the batch becomes Arrow arrays (:meth:`build_table`), which names the bad record.
        """
        if offset <= self._written.get(partition, -1):
            self._replays += 1
            return
        try:
            head = usage_header(value)
        except InternalFormatError as exc:
            raise PermanentSinkError(
                f"usage-cells record {partition}@{offset} is not a usage partial: {exc}"
            ) from exc
        src = (head.partition, head.first_offset, head.last_offset)
        seen = self._srcs.setdefault(partition, {})
        held = seen.setdefault(src, offset)
        if held != offset:
            log.warning(
                "usage-cells record %d@%d repeats src %s of record %d@%d: adding none of its time",
                partition, offset, src, partition, held,
            )  # fmt: skip
            self._replays += 1
            try:
                carrier = _progress_carrier(value)
            except InternalFormatError as exc:
                raise PermanentSinkError(
                    f"usage-cells record {partition}@{offset} is not a usage partial: {exc}"
                ) from exc
            if carrier is None:
                return
            head = carrier
        self._records.append((partition, offset, *head))
        self._rows += head.rows
        first, _, count = self._ranges.get(partition, (offset, offset, 0))
        self._ranges[partition] = (first, offset, count + 1)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def rows(self) -> int:
        """Rows buffered."""
        return self._rows

    async def flush(self) -> FlushResult:
        """Write the buffer in one insert (in a thread: chDB and HTTP calls block)."""
        replays = self._replays
        if not self._records:
            self._replays = 0
            return FlushResult(replays=replays)
        rows = await asyncio.to_thread(self._insert)
        return FlushResult(batches=1, rows=rows, replays=replays)

    def discard(self) -> None:
        """Forget the buffer. The srcs it held stay remembered with their own offsets: reading those records
        again is not taken for a copy."""
        self._replays = 0
        self._ranges.clear()
        self._records.clear()
        self._rows = 0

    async def on_assign(self, partitions: set[int]) -> None:
        """Load how far ClickHouse already holds each assigned partition (the replay skip)."""
        await asyncio.to_thread(self.load_progress, partitions)

    # --- internals
    def load_progress(self, partitions: set[int] | None = None) -> dict[int, int]:
        """Read ``sink_progress``; keep (and return) the highest written offset per partition."""
        rows = self.client.query(
            f"SELECT src_partition, max(last_offset) FROM {self.db}.sink_progress "  # noqa: S608
            "GROUP BY src_partition"
        ).result_rows
        found = {int(p): int(o) for p, o in rows}
        for p in partitions if partitions is not None else found.keys():
            if p in found:
                self._written[p] = max(self._written.get(p, -1), found[p])
        return found

    def batch_token(self) -> str:
        """The dedup token of the current buffer."""
        return dedup_token(self._ranges)

    def build_table(self) -> pa.Table:
        """The buffer as one Arrow table of ``app_minute_in``'s columns (PermanentSinkError if it cannot be)."""
        try:
            return partials_table(self._records)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            raise PermanentSinkError(
                f"usage-cells record {self._bad_record()} does not fit the input table: {exc}"
            ) from exc

    def _bad_record(self) -> str:
        """``partition@offset`` of the first buffered record that does not convert alone (error path only)."""
        for record in self._records:
            try:
                partials_table([record])
            except (pa.ArrowException, OverflowError, TypeError, ValueError):
                return f"{record[0]}@{record[1]}"
        return "?"

    def _insert(self) -> int:
        """Insert the buffer, clear it and return the rows written."""
        table = self.build_table()
        settings = {
            "insert_deduplicate": 1,
            "insert_deduplication_token": self.batch_token(),
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }
        try:
            self.client.insert_arrow(f"{self.db}.app_minute_in", table, settings=settings)
        except DatabaseError as exc:
            if getattr(exc, "code", None) in PERMANENT_CODES:
                raise PermanentSinkError(f"ClickHouse rejected the batch for good: {exc}") from exc
            raise
        for p, (_, last, _) in self._ranges.items():
            self._written[p] = max(self._written.get(p, -1), last)
        for seen in self._srcs.values():
            for _ in range(len(seen) - SRC_MEMORY):
                del seen[next(iter(seen))]
        self.discard()
        return int(table.num_rows)
