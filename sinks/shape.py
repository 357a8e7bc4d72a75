"""The one sink shape (STYLE.md): ``add(record)`` buffers, ``flush()`` writes the buffer in one round trip
and says what it did.

A sink keeps no metrics and knows nothing of the loop that drives it (:mod:`sinks.runner`): the loop reads the
:class:`FlushResult` of every flush and records it. Besides a transient failure (any other exception: the loop
retries the same buffer), a flush can end in one of two ways the loop treats differently:
:class:`PermanentSinkError` stops the sink, :class:`SourceRewind` re-reads the input from its start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.structs import ConsumerRecord


class PermanentSinkError(RuntimeError):
    """A batch that retrying cannot write (bad schema, undecodable record): the sink must stop."""


class SourceRewind(Exception):  # noqa: N818 - a request to the loop, not a failure
    """The sink's store lost its state: drop the buffer and re-read every assigned partition from the start."""


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush did."""

    batches: int = 0
    """Batches written: 1, or 0 when the buffer held nothing to write."""
    rows: int = 0
    """Rows (ClickHouse) or presence changes (Redis) written."""
    stale: int = 0
    """Presence changes not applied because Redis held a newer ``ts``."""
    replays: int = 0
    """Records skipped since the last flush because the store already holds them (replays)."""


class BatchSink(Protocol):
    """What the loop drives."""

    name: str

    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        """Buffer one input record (raise PermanentSinkError if it can never be written)."""

    def __len__(self) -> int:
        """Records buffered since the last flush."""

    async def flush(self) -> FlushResult:
        """Write the buffer in one round trip and clear it; on failure keep it intact for a retry."""

    def discard(self) -> None:
        """Forget the buffer (its records will be read again)."""

    async def on_assign(self, partitions: set[int]) -> None:
        """Partitions were assigned (load whatever per-partition state the sink keeps)."""
