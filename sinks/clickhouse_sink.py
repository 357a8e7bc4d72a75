"""ClickHouse sink: usage partials (internal usage-cells topic) → ``{db}.app_minute`` (CONTRACT §5).

Each flush is ONE insert of every buffered row into the Null-engine table ``{db}.app_minute_in``; two
materialized views turn that block into ``app_minute`` rows (``sum(active_ms)``, ``uniqState(student_token)``)
and into ``sink_progress`` (the highest usage-cells offset written, per partition).

Replaying input never adds to ``active_ms`` or ``students``, by two mechanisms:

- **Progress skip.** On every partition assignment the sink reads ``sink_progress`` and drops records at or below
  the offset already written. This covers a crash between insert and offset commit, a rebalance and a restart,
  however differently the replay happens to batch the records.
- **Insert deduplication token.** Each insert carries ``insert_deduplication_token`` derived from the batch's
  identity (the usage-cells partitions and offset ranges it holds) and the target tables keep
  ``non_replicated_deduplication_window`` block ids, with ``deduplicate_blocks_in_dependent_materialized_views``
  so the views dedup too. A retried insert (same batch: e.g. a timeout after the server had written it, or a
  crash after ``app_minute`` but before ``sink_progress`` was written, then the same records replayed) is dropped
  by ClickHouse instead of added twice.

Transient failures (server down, timeouts, injected faults) leave the buffer intact for the loop to retry;
a schema mismatch or an undecodable record raises :class:`~sinks.runner.PermanentSinkError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from itertools import accumulate
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from csync import metrics
from sinks.faults import SinkFaults
from sinks.migrate import check_identifier
from sinks.runner import PermanentSinkError

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

_SCHEMA = pa.schema(
    [
        ("minute", pa.uint32()),
        ("app", pa.string()),
        ("sub_app", pa.string()),
        ("student_token", pa.uint64()),
        ("active_ms", pa.uint64()),
        ("src_partition", pa.uint32()),
        ("src_offset", pa.uint64()),
    ]
)


def _table(columns: list[list[Any]]) -> pa.Table:
    """Columns of Python values → an Arrow table of :data:`_SCHEMA`; raises on a wrong type, range or null."""
    arrays = [pa.array(c, f.type) for c, f in zip(columns, _SCHEMA, strict=True)]
    if any(a.null_count for a in arrays):
        raise ValueError("null in a usage row")
    return pa.Table.from_arrays(arrays, schema=_SCHEMA)


def dedup_token(ranges: dict[int, tuple[int, int, int]]) -> str:
    """The insert deduplication token of a batch: its usage-cells ``partition → (first, last, count)`` ranges.

    Two batches get the same token exactly when they hold the same records of the topic.
    """
    ident = ";".join(f"{p}:{a}-{b}/{n}" for p, (a, b, n) in sorted(ranges.items()))
    return "usage-cells:" + hashlib.sha256(ident.encode()).hexdigest()[:40]


class ClickHouseUsageSink:
    """Buffers usage partials and writes them with one insert per flush (see the module doc)."""

    name = "clickhouse"

    def __init__(self, client: Client, database: str, *, faults: SinkFaults | None = None) -> None:
        self.client = client
        self.db = check_identifier(database)
        self.faults = faults or SinkFaults()
        self._written: dict[int, int] = {}  # partition → highest offset already in ClickHouse
        self._ranges: dict[int, tuple[int, int, int]] = {}
        self._records = 0
        # minute, app, sub_app, student_token, active_ms; the source columns are built from _spans at flush
        self._cols: tuple[list[Any], ...] = ([], [], [], [], [])
        # (partition, offset, rows) of each buffered record
        self._spans: list[tuple[int, int, int]] = []

    # --- the sink shape
    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        """Buffer the rows of one usage-cells record (skipped if ClickHouse already holds it)."""
        self.add_partial(record.partition, record.offset, record.value)

    def add_partial(self, partition: int, offset: int, value: bytes) -> None:
        """:meth:`add` for a record given by its parts.

        One ``orjson`` call, then the rows are transposed (``zip``, in C) onto the column lists: no Python code
        per row, and the rows' lists die at once instead of piling up for the garbage collector. Types and ranges
        are checked when the columns become Arrow arrays (:meth:`build_table`), which names the bad record.
        """
        if offset <= self._written.get(partition, -1):
            metrics.SINK_REPLAY_SKIPPED.labels(self.name).inc()
            return
        try:
            obj = orjson.loads(value)
            _, _, _ = obj["src"]
            rows = obj["rows"]
            n = len(rows)
            if n:  # strict: every row has the same length, which the unpacking makes 5
                minute, app, sub_app, token, active = zip(*rows, strict=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PermanentSinkError(
                f"usage-cells record {partition}@{offset} is not a usage partial: {exc}"
            ) from exc
        if n:
            cols = self._cols
            cols[0].extend(minute)
            cols[1].extend(app)
            cols[2].extend(sub_app)
            cols[3].extend(token)
            cols[4].extend(active)
        self._spans.append((partition, offset, n))
        first, _, count = self._ranges.get(partition, (offset, offset, 0))
        self._ranges[partition] = (first, offset, count + 1)
        self._records += 1

    def __len__(self) -> int:
        return self._records

    @property
    def rows(self) -> int:
        """Rows buffered."""
        return len(self._cols[0])

    async def flush(self) -> None:
        """Write the buffer in one insert (in a thread: chDB and HTTP calls block)."""
        if not self._records:
            return
        await asyncio.to_thread(self._insert)
        # Only now is the batch known written; crash_after_insert fires before the loop commits offsets.
        self.faults.after_write()

    def discard(self) -> None:
        self._ranges.clear()
        self._spans.clear()
        self._records = 0
        for col in self._cols:
            col.clear()

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
            arrays = [pa.array(c, f.type) for c, f in zip(self._cols, _SCHEMA, strict=False)]
            if any(a.null_count for a in arrays):
                raise ValueError("null in a usage row")
            # Each record's partition and offset repeated over its rows, in C (run-end decoding).
            spans = [span for span in self._spans if span[2]]  # a run may not be empty
            run_ends = pa.array(list(accumulate(n for _, _, n in spans)), pa.int64())
            for i, field in ((0, _SCHEMA.field(5)), (1, _SCHEMA.field(6))):
                values = pa.array([span[i] for span in spans], field.type)
                arrays.append(
                    pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(run_ends, values))
                )
            return pa.Table.from_arrays(arrays, schema=_SCHEMA)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            raise PermanentSinkError(
                f"usage-cells record {self._bad_record()} does not fit the input table: {exc}"
            ) from exc

    def _bad_record(self) -> str:
        """``partition@offset`` of the first buffered record whose rows do not convert (error path only)."""
        start = 0
        for partition, offset, n in self._spans:
            try:
                _table([c[start : start + n] for c in self._cols] + [[partition] * n, [offset] * n])
            except (pa.ArrowException, OverflowError, TypeError, ValueError):
                return f"{partition}@{offset}"
            start += n
        return "?"

    def _insert(self) -> None:
        delay = self.faults.before_write()
        if delay:
            time.sleep(delay)
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
        metrics.SINK_BATCHES.labels(self.name).inc()
        metrics.SINK_ROWS.labels(self.name).inc(table.num_rows)
        for p, (_, last, _) in self._ranges.items():
            self._written[p] = max(self._written.get(p, -1), last)
        self.discard()
