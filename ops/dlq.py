"""The DLQ as operators see it: records, statistics, redaction and the redrive plan — pure functions.

A DLQ record (CONTRACT §1) holds the original key and bytes of a rejected event and the headers ``error``,
``error_detail``, ``source_topic``, ``source_partition``, ``source_offset``, ``source_index``. Nothing here
talks to Kafka or reads a clock (``ops.dlq_io`` does; callers pass ``now_ms``).

**Redrive, exactly once.** ``csync dlq redrive`` re-sends selected originals to the activity topic with their
original key, on their source partition (so a student's events keep their order) and with a ``redrive``
header naming the DLQ record (``{partition}:{offset}``). A ledger topic records each run: an *intent* (the
DLQ records about to be sent) before sending, then *done* (each DLQ record → the activity partition and
offset it was sent to). So:

- a DLQ record in a *done* entry is never sent again: a second run sends nothing (the worker's event-id
  dedup is not relied on: it remembers an id only while its device's newest event is within
  ``ALLOWED_LATENESS_S`` and the device has had an arrival within ``USAGE_EVICT_AFTER_S``; a repeat after
  that, of a device that went quiet, would count again);
- a run that died between intent and done leaves its records *uncertain*; the next run looks for their
  ``redrive`` headers in the activity topic from the intent's time on and treats the ones found as sent;
- a redriven event that is still invalid returns to the DLQ once; its ``source_offset`` is one the ledger
  produced, so it is a *return* and is never selected again (no loops).

Events that cannot count are not sent: still in the future (``ts`` > now + ``MAX_FUTURE_S``) or older than
``MAX_EVENT_AGE_H`` (less a margin), which the worker would reject again as ``ts_too_old``. Events older than
the lateness window are sent but may count nothing: the worker drops an event as *late* when its device
already sent one more than ``ALLOWED_LATENESS_S`` newer (CONTRACT §5) — the plan counts them for a warning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

REDRIVE_HEADER = "redrive"
# Rejections that are authorization decisions, not data errors: re-sending them to the raw topic would let a
# device write into a district its token is not for. The device must resend with the right token.
NEVER_REDRIVEN = frozenset({"wrong_district"})
# Age buckets of ``csync dlq stats`` (seconds since the record entered the DLQ).
AGE_BUCKETS = ((3600, "<1h"), (86_400, "<1d"), (3 * 86_400, "<3d"), (7 * 86_400, "<7d"))
# Keep this much room before MAX_EVENT_AGE_H: a redriven event must still be valid when the worker reads it.
TOO_OLD_MARGIN_MS = 15 * 60_000
# Fields of CONTRACT §2 that identify no one and may be shown redacted-mode.
SHOWN_FIELDS = ("v", "kind", "ts", "app", "sub_app")
REDACTED = "«redacted»"

DlqId = tuple[int, int]  # (DLQ partition, DLQ offset)


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One DLQ record with its headers parsed."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_index: int

    @property
    def id(self) -> DlqId:
        return (self.partition, self.offset)

    @property
    def source(self) -> tuple[int, int, int]:
        """Where the event was first read: its order among the originals."""
        return (self.source_partition, self.source_offset, self.source_index)

    def event_ts(self) -> int | None:
        """The original event's ``ts`` when its bytes are a JSON object with an integer ``ts``."""
        obj = _json_object(self.value)
        ts = obj.get("ts") if obj is not None else None
        return ts if isinstance(ts, int) and not isinstance(ts, bool) else None


def parse_record(
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]],
) -> DlqRecord:
    """A DLQ record from a consumed message (missing or odd headers become ``""``/``-1``)."""
    h = {name: raw.decode("utf-8", "replace") for name, raw in headers}

    def number(name: str) -> int:
        try:
            return int(h.get(name, "-1"))
        except ValueError:
            return -1

    return DlqRecord(
        partition, offset, timestamp_ms, key, value or b"",
        h.get("error", "unknown"), h.get("error_detail", ""), h.get("source_topic", ""),
        number("source_partition"), number("source_offset"), number("source_index"),
    )  # fmt: skip


def _json_object(value: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


# --- stats (never contents)


@dataclass
class DlqStats:
    """Counts of DLQ records by reason, source partition and age; no content."""

    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_partition: Counter[int] = field(default_factory=Counter)
    by_age: Counter[str] = field(default_factory=Counter)
    redriven: int = 0
    returned: int = 0

    def lines(self) -> list[str]:
        out = [f"DLQ records: {self.total} (redriven {self.redriven}, returned after a redrive "
               f"{self.returned})"]  # fmt: skip
        out += ["", "by reason:"] + [f"  {r:22} {n}" for r, n in self.by_reason.most_common()]
        out += ["", "by source partition:"]
        out += [f"  {p:<22} {n}" for p, n in sorted(self.by_partition.items())]
        labels = [label for _, label in AGE_BUCKETS] + [">=7d"]
        out += ["", "by age in the DLQ:"] + [f"  {a:22} {self.by_age[a]}" for a in labels]
        return out


def age_bucket(age_ms: int) -> str:
    for limit_s, label in AGE_BUCKETS:
        if age_ms < limit_s * 1000:
            return label
    return ">=7d"


def dlq_stats(records: Iterable[DlqRecord], ledger: Ledger, now_ms: int) -> DlqStats:
    stats = DlqStats()
    for rec in records:
        stats.total += 1
        stats.by_reason[rec.reason] += 1
        stats.by_partition[rec.source_partition] += 1
        stats.by_age[age_bucket(now_ms - rec.timestamp_ms)] += 1
        stats.redriven += rec.id in ledger.sent
        stats.returned += ledger.is_return(rec)
    return stats


# --- show (redacted unless asked)


def redact_key(key: bytes | None) -> str:
    """A DLQ key without its ids: ``{district}:{student}`` → ``«redacted»:«redacted»``."""
    if key is None:
        return "-"
    return ":".join(REDACTED for _ in key.decode("utf-8", "replace").split(":"))


def redact_value(value: bytes) -> str:
    """The event without ids, names or anything outside the shown contract fields.

    Not JSON or not an object: only its type and size. An object: ``v``, ``kind``, ``ts``, ``app`` and
    ``sub_app`` (short scalars) as they are; every other field name kept with its value redacted (which
    fields a broken producer sent is what an operator needs); ``url`` is reduced to ``«redacted»`` too.
    """
    obj = _json_object(value)
    if obj is None:
        try:
            kind = type(orjson.loads(value)).__name__
        except orjson.JSONDecodeError:
            kind = "not JSON"
        return f"<{kind}, {len(value)} bytes>"
    shown: dict[str, Any] = {}
    for name, item in obj.items():
        keep = name in SHOWN_FIELDS and isinstance(item, int | float | str | None)
        if keep and isinstance(item, str) and len(item) > 64:
            item = item[:64] + "…"
        shown[name[:64]] = item if keep else REDACTED
    return orjson.dumps(shown).decode()


def show_line(rec: DlqRecord, unredacted: bool) -> str:
    key = (rec.key or b"-").decode("utf-8", "replace") if unredacted else redact_key(rec.key)
    value = rec.value.decode("utf-8", "replace") if unredacted else redact_value(rec.value)
    detail = rec.detail if unredacted else rec.detail[:80]
    return (
        f"dlq {rec.partition}:{rec.offset} reason={rec.reason} source={rec.source_partition}:"
        f"{rec.source_offset}#{rec.source_index} detail={detail!r}\n  key={key}\n  value={value}"
    )


# --- the ledger of redrives


@dataclass
class Ledger:
    """What earlier redrives sent (``sent``: DLQ id → activity (partition, offset)) and what a run that died
    may or may not have sent (``uncertain``: DLQ id → the intent's time in ms)."""

    sent: dict[DlqId, tuple[int, int]] = field(default_factory=dict)
    uncertain: dict[DlqId, int] = field(default_factory=dict)
    produced: set[tuple[int, int]] = field(default_factory=set)  # activity (partition, offset)

    def is_return(self, rec: DlqRecord) -> bool:
        """Whether ``rec`` is a redriven event the worker rejected again."""
        return (rec.source_partition, rec.source_offset) in self.produced


def read_ledger(entries: Iterable[tuple[int, bytes]]) -> Ledger:
    """The ledger from its records ``(timestamp_ms, value)`` in log order."""
    intents: dict[DlqId, int] = {}
    ledger = Ledger()
    for timestamp_ms, value in entries:
        doc = orjson.loads(value)
        if doc["phase"] == "intent":
            for p, o in doc["ids"]:
                intents[(p, o)] = timestamp_ms
        else:
            for p, o, ap, ao in doc["sent"]:
                ledger.sent[(p, o)] = (ap, ao)
                ledger.produced.add((ap, ao))
    ledger.uncertain = {i: t for i, t in intents.items() if i not in ledger.sent}
    return ledger


def intent_doc(run: str, ids: Sequence[DlqId]) -> bytes:
    return orjson.dumps({"run": run, "phase": "intent", "ids": [list(i) for i in ids]})


def done_doc(run: str, sent: Mapping[DlqId, tuple[int, int]]) -> bytes:
    rows = [[p, o, ap, ao] for (p, o), (ap, ao) in sorted(sent.items())]
    return orjson.dumps({"run": run, "phase": "done", "sent": rows})


# --- the redrive plan


@dataclass(frozen=True, slots=True)
class Limits:
    """What the worker accepts, in ms (from settings)."""

    max_age_ms: int
    max_future_ms: int
    lateness_ms: int


@dataclass
class RedrivePlan:
    """The DLQ records a redrive sends, in source order, and why the others are left."""

    send: list[DlqRecord] = field(default_factory=list)
    already_redriven: int = 0
    returned: int = 0
    uncertain: int = 0
    in_future: int = 0
    too_old: int = 0
    older_than_lateness: int = 0  # sent; counted only if their device sent nothing newer since

    def lines(self) -> list[str]:
        out = [f"to send: {len(self.send)}"]
        left = {
            "already redriven (ledger)": self.already_redriven,
            "returned after a redrive, never re-driven": self.returned,
            "unresolved earlier run (check failed)": self.uncertain,
            "still in the future (> MAX_FUTURE_S): wait, then redrive": self.in_future,
            "older than MAX_EVENT_AGE_H: would be rejected again, left": self.too_old,
        }
        out += [f"not sent: {n:6}  {why}" for why, n in left.items() if n]
        if self.older_than_lateness:
            out.append(
                f"warning: {self.older_than_lateness} events are older than ALLOWED_LATENESS_S; each "
                "counts only if its device sent no event more than that newer since (else the worker "
                "drops it as late: csync_late_events_total)"
            )
        return out


def select(records: Iterable[DlqRecord], reason: str, since_ms: int | None) -> list[DlqRecord]:
    """The records of ``reason`` that entered the DLQ at or after ``since_ms``."""
    return [
        r
        for r in records
        if r.reason == reason and (since_ms is None or r.timestamp_ms >= since_ms)
    ]


def plan_redrive(
    selected: Iterable[DlqRecord], ledger: Ledger, limits: Limits, now_ms: int
) -> RedrivePlan:
    """Decide, per selected record, whether it is sent (see the module docstring)."""
    plan = RedrivePlan()
    for rec in selected:
        ts = rec.event_ts()
        if rec.id in ledger.sent:
            plan.already_redriven += 1
        elif ledger.is_return(rec):
            plan.returned += 1
        elif rec.id in ledger.uncertain:
            plan.uncertain += 1
        elif ts is not None and ts > now_ms + limits.max_future_ms:
            plan.in_future += 1
        elif ts is not None and ts < now_ms - limits.max_age_ms + TOO_OLD_MARGIN_MS:
            plan.too_old += 1
        else:
            plan.older_than_lateness += ts is not None and ts < now_ms - limits.lateness_ms
            plan.send.append(rec)
    plan.send.sort(key=lambda r: r.source)
    return plan
