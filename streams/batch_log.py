"""The worker's write-ahead batch log: intents, snapshots, and the recovery plan read from them.

Each input partition has a slot (the same partition) of the internal state topic. A batch's
:class:`Intent` is appended there in the same transaction as all the batch's outputs (see
:mod:`streams.ordering`), so a committed intent means committed outputs and the log holds no
other; every few seconds a snapshot of the partition state follows (after every earlier intent
was committed). :class:`BatchLog` is that log as a protocol — the Kafka adapter is
:class:`streams.kafka_io.KafkaBatchLog`, read with ``read_committed`` — and :func:`recovery_plan`
is what recovery does with it: restore the last snapshot and replay every later intent that
continues it, emitting nothing ("replay all, emit none").
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import orjson

INTENT_KEY = b"intent"
SNAPSHOT_KEY = b"snap"


class Intent(NamedTuple):
    """What a batch is, written durably before any of its output: replaying it reproduces the
    output.

    Offsets are inclusive; ``act_first > act_last`` means no activity record (a timer batch, the
    ``tick``-th since offset ``act_first - 1``). ``close`` says whether silent devices were closed.
    """

    partition: int
    act_first: int
    act_last: int
    roster_first: int
    roster_last: int
    now_ms: int
    close: bool
    tick: int

    @property
    def src(self) -> tuple[int, int, int]:
        """The ``UsagePartial.src`` of this batch: unique per batch (timer batches: first >
        last)."""
        if self.act_first <= self.act_last:
            return (self.partition, self.act_first, self.act_last)
        return (self.partition, self.act_first, self.act_first - self.tick)


def encode_intent(intent: Intent) -> bytes:
    """An intent as the state topic holds it (a JSON array of its fields)."""
    return orjson.dumps(list(intent))


def decode_intent(raw: bytes) -> Intent:
    """The inverse of :func:`encode_intent`."""
    return Intent(*orjson.loads(raw))


def continuing(intents: list[Intent], act_next: int, roster_next: int) -> list[Intent]:
    """The intents, in log order, that continue a state reading ``act_next``/``roster_next`` next.

    Each kept intent moves the expected offsets on (as :func:`streams.partition.process_batch`
    moves the state's), so a chain of batches is replayed whole; an intent that does not start where
    the chain stands (a stale duplicate: a log written before the fencing transactions) is
    skipped.
    """
    kept: list[Intent] = []
    for i in intents:
        if i.act_first != act_next or i.roster_first != roster_next:
            continue
        kept.append(i)
        if i.act_first <= i.act_last:
            act_next = i.act_last + 1
        if i.roster_first <= i.roster_last:
            roster_next = i.roster_last + 1
    return kept


class LogTail(NamedTuple):
    """A partition's log from its last snapshot on: the snapshot (None: there is none) and the
    intents after it, in log order."""

    snapshot: bytes | None
    intents: list[Intent]


class BatchLog(Protocol):
    """The per-partition batch log. Appends happen inside the partition's transaction: they
    are visible once it commits."""

    async def append_intents(self, intents: list[Intent]) -> None:
        """Append each intent to its partition's slot (one per partition), inside the partition's
        open transaction."""

    async def append_snapshot(self, partition: int, snapshot: bytes) -> None:
        """Append an encoded partition state (inside the partition's open transaction)."""

    async def tail(self, partition: int) -> LogTail:
        """The last committed snapshot of ``partition`` and the committed intents after it."""


def recovery_plan(intents: list[Intent], act_next: int, roster_next: int) -> list[Intent]:
    """The intents to replay over the restored state, in order; their outputs are not emitted
    again: each was committed in the same transaction as its intent (``read_committed`` readers
    never see an intent without its outputs)."""
    return continuing(intents, act_next, roster_next)
