"""A partition's batch function and its snapshots: a snapshot round-trips the whole state, and a
worker recovered from it continues exactly like the one that wrote it."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from schemas.clock import split_minutes
from schemas.decoder import Limits, encode_envelope, encode_event
from schemas.event import ACTIVE_KINDS, ActivityEvent
from schemas.routing import partition_for_key
from streams import partition, snapshot
from streams.batch_log import Intent, continuing
from streams.partition import Params, PartitionState, Record, new_state, process_batch
from streams.snapshot import decode_snapshot, encode_snapshot
from streams.usage import UsageRules

NOW = 1_700_000_000_000
PARAMS = Params(4, 60_000, UsageRules(), Limits(), "act", refresh_ms=30_000)


def _events(rnd: random.Random, start: int, count: int) -> list[ActivityEvent]:
    kinds = ["app_focus", "heartbeat", "heartbeat", "heartbeat", "idle", "logout"]
    out = []
    for i in range(count):
        student = f"s{rnd.randrange(12)}"
        kind = rnd.choice(kinds)
        app = rnd.choice(["docs", "web", "math"]) if kind in ACTIVE_KINDS else ""
        ts = start + rnd.randrange(0, 50) * 1000  # many equal ts: ties
        out.append(
            ActivityEvent(f"e{start}-{i}", kind, ts, "d1", student, f"dev{rnd.randrange(2)}",
                          app, "pbs.org" if app == "web" else "")
        )  # fmt: skip
    return out


def _batches(seed: int) -> list[tuple[Intent, list[Record]]]:
    """Batches of partition 0's students: envelopes, single events, duplicates, reordering."""
    rnd = random.Random(seed)
    batches = []
    offset = 0
    now = NOW
    for b in range(30):
        now += rnd.randrange(200, 20_000)
        events = [
            e
            for e in _events(rnd, now - 70_000, 40)
            if partition_for_key(f"{e.district_id}:{e.student_id}".encode(), 4) == 0
        ]
        events += rnd.sample(events, k=len(events) // 5)  # device retries
        rnd.shuffle(events)
        records: list[Record] = []
        if b % 3 == 0:
            for e in events:
                records.append((offset, None, encode_event(e), ()))
                offset += 1
        elif events:
            records.append((offset, None, encode_envelope(events), ()))
            offset += 1
        first = records[0][0] if records else offset
        intent = Intent(0, first, offset - 1, 0, -1, now, b % 2 == 0, 0)
        batches.append((intent, records))
    return batches


def _fields(state: PartitionState) -> tuple[object, ...]:
    students = {k: s.fields() for k, s in state.presence.states.items()}
    devices = {k: d.fields() for k, d in state.usage.devices.items()}
    return (
        state.partition, state.act_next, state.roster_next, state.ticks, state.last_close_ms,
        state.usage._seq, state.usage.late_events, students, devices,
    )  # fmt: skip


def test_snapshot_round_trips_presence_and_usage_state() -> None:
    state = new_state(0, PARAMS)
    for intent, records in _batches(1)[:20]:
        process_batch(state, records, [], intent, PARAMS)
    assert len(state.presence) > 0 and len(state.usage) > 0
    assert any(d.buffer for d in state.usage.devices.values())
    assert any(len(d.seen_ids()) > 1 for d in state.usage.devices.values())
    restored = decode_snapshot(encode_snapshot(state), PARAMS)
    assert _fields(restored) == _fields(state)
    assert encode_snapshot(restored) == encode_snapshot(state)


def test_recovered_state_continues_exactly_like_the_original() -> None:
    batches = _batches(2)
    state = new_state(0, PARAMS)
    for intent, records in batches[:12]:
        process_batch(state, records, [], intent, PARAMS)
    restored = decode_snapshot(encode_snapshot(state), PARAMS)
    emitted = []
    for intent, records in batches[12:]:
        a = process_batch(state, records, [], intent, PARAMS)
        b = process_batch(restored, records, [], intent, PARAMS)
        assert (a.presence, sorted(a.intervals), a.valid, a.late) == (
            b.presence, sorted(b.intervals), b.valid, b.late,
        )  # fmt: skip
        emitted += a.presence
    assert emitted and _fields(restored) == _fields(state)


def test_chunked_poll_gives_the_same_states_and_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big poll is applied in chunks of events: the chunk size changes no state and no usage
    (presence may emit an intermediate view more, never a different final one)."""

    def run(chunk: int) -> tuple[object, ...]:
        monkeypatch.setattr(partition, "_CHUNK_EVENTS", chunk)
        state = new_state(0, PARAMS)
        ms: Counter[tuple[object, ...]] = Counter()
        last_view: dict[str, tuple[object, ...]] = {}
        for intent, records in _batches(3):
            out = process_batch(state, records, [], intent, PARAMS)
            for key, start, end, app, sub in out.intervals:
                for minute, n in split_minutes(start, end):
                    ms[(minute, app, sub, *key)] += n
            for ch in out.presence:
                last_view[ch.student_id] = (ch.online, ch.app, ch.sub_app, ch.ts)
        students = {
            k: (s.ts, s.kind, s.app, s.sub_app, s.tie_ids, s.shown)
            for k, s in state.presence.states.items()
        }
        devices = {k: d.fields() for k, d in state.usage.devices.items()}
        return students, devices, ms, {k: v[:3] for k, v in last_view.items()}

    assert run(1) == run(10**9)


def test_recovery_replays_every_intent_after_the_snapshot() -> None:
    """Recovery replays the whole chain of intents after a snapshot (the first one only left the
    later batches, whose outputs were already sent, to be processed again: usage counted twice)."""
    batches = _batches(4)
    live = new_state(0, PARAMS)
    for intent, records in batches[:10]:
        process_batch(live, records, [], intent, PARAMS)
    snapshot = encode_snapshot(live)
    log = [intent for intent, _ in batches[10:16]]
    for intent, records in batches[10:16]:
        process_batch(live, records, [], intent, PARAMS)
    timer = Intent(0, live.act_next, live.act_next - 1, 0, -1, log[-1].now_ms + 1, True, 1)
    stale = log[2]  # a duplicate of an earlier intent (e.g. written by a zombie worker)
    written = [*log[:4], stale, *log[4:], timer]

    recovered = decode_snapshot(snapshot, PARAMS)
    replay = continuing(written, recovered.act_next, recovered.roster_next)
    assert replay == [*log, timer]
    records_of = dict(batches)
    for intent in replay:
        process_batch(recovered, records_of.get(intent, []), [], intent, PARAMS)
    process_batch(live, [], [], timer, PARAMS)
    assert _fields(recovered) == _fields(live)


# Written by the release before the compact device state (commit 9bdcc0c): a snapshot after the
# first 12 batches of _upgrade_batches(), its outputs for the rest, and its final snapshot.
DATA = Path(__file__).parent / "data"


def _upgrade_batches() -> list[tuple[Intent, list[Record], list[Record]]]:
    """_batches(2) with roster records (names, classes, a tombstone) in two of them."""
    roster = {
        0: [(b"d1:s0", {"name": "Ada", "classes": ["c1", "c2"]}), (b"d1:s7", {"name": "Alan"})],
        14: [(b"d1:s0", {"name": "Ada L.", "classes": ["c2"]}), (b"d1:s7", None)],
    }
    out, roster_offset = [], 0
    for b, (intent, records) in enumerate(_batches(2)):
        rec: list[Record] = []
        for key, value in roster.get(b, []):
            rec.append((roster_offset, key, None if value is None else orjson.dumps(value), ()))
            roster_offset += 1
        first = rec[0][0] if rec else roster_offset
        out.append(
            (intent._replace(roster_first=first, roster_last=roster_offset - 1), records, rec)
        )
    return out


def _shown(outputs: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What the Redis hashes end with: the last change per student (classes aside)."""
    last: dict[str, tuple[Any, ...]] = {}
    for out in outputs:
        for c in out["presence"]:
            last[c["student_id"]] = (c["name"], c["online"], c["app"], c["sub_app"], c["ts"])
    return last


def _visible(outputs: list[dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    """Per batch, the changes of what a teacher sees or of the roster (ts-only ones left out)."""
    out: list[list[tuple[Any, ...]]] = []
    shown: dict[str, tuple[Any, ...]] = {}
    for batch in outputs:
        keep = []
        for c in batch["presence"]:
            key = (c["name"], c["online"], c["app"], c["sub_app"], c["classes_add"], c["deleted"])
            if shown.get(c["student_id"]) != key or c["classes_remove"] or c["deleted"]:
                keep.append((c["student_id"], *key))
            shown[c["student_id"]] = key
        out.append(keep)
    return out


def test_a_snapshot_of_the_previous_release_continues_exactly() -> None:
    """A rolling upgrade: this release recovers from the previous one's snapshot, attributes
    what the previous release attributed and emits its visible changes and final hashes, ending
    in the same state. (This release writes an offline student's new ts at once where the
    previous one waited for the refresh: the only difference, in ts-only changes.)"""
    state = decode_snapshot((DATA / "snapshot_v1_after_12.zst").read_bytes(), PARAMS)
    got = []
    for intent, records, roster in _upgrade_batches()[12:]:
        out = process_batch(state, records, roster, intent, PARAMS)
        got.append(
            {"presence": out.presence, "intervals": sorted(out.intervals), "valid": out.valid,
             "late": out.late}
        )  # fmt: skip
    want = orjson.loads((DATA / "outputs_v1_after_12.json").read_bytes())
    got = orjson.loads(orjson.dumps(got))
    assert any(o["intervals"] for o in want) and any(o["presence"] for o in want)
    strip = ("intervals", "valid", "late")
    assert [{k: o[k] for k in strip} for o in got] == [{k: o[k] for k in strip} for o in want]
    assert _visible(got) == _visible(want)
    assert _shown(got) == _shown(want)
    previous_final = decode_snapshot((DATA / "snapshot_v1_final.zst").read_bytes(), PARAMS)
    assert _fields(state) == _fields(previous_final)


def test_snapshot_keeps_the_format_the_previous_release_reads() -> None:
    """A partition can move back to a worker still running the previous release: it reads
    buffered events as ``[ts, q, active, app, sub_app]`` sorted by ``(ts, q)``, inserts new ones
    with ``q = seq + 1, ...``, and reads ``seen`` as ``{event_id: ts}``."""
    state = new_state(0, PARAMS)
    for intent, records, roster in _upgrade_batches():
        process_batch(state, records, roster, intent, PARAMS)
    doc = orjson.loads(zstandard.ZstdDecompressor().decompress(encode_snapshot(state)))
    assert doc["seq"] == state.usage._seq
    assert any(len(device[1]) > 1 for device in doc["devices"])
    for key, buffer, max_ts, seen, until, arrival in doc["devices"]:
        dev = state.usage.devices[tuple(key)]
        assert [(t, a, app, sub) for t, _q, a, app, sub in buffer] == dev.buffer
        # sorting by (ts, q) keeps the buffer's order, also of equal ts (arrival order)
        qs = [q for _t, q, *_ in buffer]
        assert qs == sorted(set(qs)) and all(q < doc["seq"] for q in qs)
        assert sorted(buffer, key=lambda e: (e[0], e[1])) == buffer
        assert seen == dev.seen_ids() and all(isinstance(t, int) for t in seen.values())
        assert (max_ts, until, arrival) == (dev.max_ts, dev.attributed_until, dev.last_arrival_ms)
    assert len(doc["students"]) == len(state.presence) and all(
        len(row) == 12 for row in doc["students"]
    )


def test_snapshot_is_the_same_whatever_its_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are serialised a chunk at a time; chunk edges change no byte, an empty state too."""
    state = new_state(0, PARAMS)
    for intent, records, roster in _upgrade_batches():
        process_batch(state, records, roster, intent, PARAMS)
    snapshots = set()
    for rows in (1, 3, 10**6):
        monkeypatch.setattr(snapshot, "_SNAPSHOT_ROWS", rows)
        snapshots.add(encode_snapshot(state))
        empty = new_state(3, PARAMS)
        assert _fields(decode_snapshot(encode_snapshot(empty), PARAMS)) == _fields(empty)
    assert len(snapshots) == 1
    assert _fields(decode_snapshot(snapshots.pop(), PARAMS)) == _fields(state)
