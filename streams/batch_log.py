"""The worker's write-ahead batch log: intents, snapshots, and the recovery plan read from them.

Each input partition has a slot (the same partition) of the internal state topic. Before any
output of a batch leaves, the batch's :class:`Intent` is appended there; every few seconds a
snapshot of the partition state follows (written only after the outputs of every earlier intent
were acknowledged). :class:`BatchLog` is that log as a protocol — the Kafka adapter is
:class:`streams.kafka_io.KafkaBatchLog` — and :func:`recovery_plan` is what recovery does with
it: restore the last snapshot, replay every later intent that continues it, and emit the outputs
of the last one only ("replay all, emit the last").
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
    the chain stands (a stale duplicate, e.g. of a zombie worker) is skipped.
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
    """The per-partition batch log. Every append returns once the log acknowledged it."""

    async def append_intents(self, intents: list[Intent]) -> None:
        """Append each intent to its partition's slot (one per partition)."""

    async def append_snapshot(self, partition: int, snapshot: bytes) -> None:
        """Append an encoded partition state."""

    async def tail(self, partition: int) -> LogTail:
        """The last snapshot of ``partition`` and the intents after it."""


class Replay(NamedTuple):
    """What recovery replays: ``silent`` intents (their outputs were acknowledged), then ``last``
    (its outputs may or may not have been sent before the crash: emitted again)."""

    silent: list[Intent]
    last: Intent | None


def recovery_plan(intents: list[Intent], act_next: int, roster_next: int) -> Replay:
    """Replay all intents that continue the restored state; emit the outputs of the last only.

    An intent is appended only after the outputs of the previous intent of its partition were
    acknowledged, so only the last one can have unsent outputs.
    """
    chain = continuing(intents, act_next, roster_next)
    if not chain:
        return Replay([], None)
    return Replay(chain[:-1], chain[-1])
