"""Decoder throughput beside plain ``orjson.loads`` of the same bytes, in the same run.

Builds realistic device activity (heartbeats, app switches, web visits with URLs, idle/logout) as
single-event records and as envelopes of 500 events, then times the decoder against ``orjson.loads``
over all of them: the worker batch loop's decoding (``streams.partition._decoded``: valid events and
notes apart, runs of up to 256 single-event records judged together by
:func:`schemas.record_batch.decode_records_within`, an envelope on its own; the ``RESULT``), and beside it, record by record, :func:`schemas.decoder.decode_split_within`
(what the collector calls per request body) and :func:`schemas.decoder.decode_record` (an outcome per
event). ``--invalid-share`` breaks that share of the events (each breakage of
the simulator's, so most envelopes then hold an invalid member). Median of ``--runs`` runs, interleaved.
Target: ratio ≥ 0.35.

    .venv/bin/python bench/bench_decode.py [--events 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from schemas.decoder import DEFAULT_LIMITS, decode_record, decode_split_within
from streams.partition import Record
from streams.partition import _decoded as worker_decoding

NOW_MS = 1_764_378_000_000
APPS = ["docs", "slides", "sheets", "math-quest", "reading-eggs", "scratch", "classroom", "meet"]
SITES = ["www.khanacademy.org", "en.wikipedia.org", "www.pbs.org", "code.org", "www.desmos.com"]
SITES += [f"site{i}.example.org" for i in range(45)]


def build_events(count: int, seed: int = 1) -> list[dict[str, object]]:
    """``count`` events of 2,000 students in time order, with a realistic kind mix.

    As real devices do, a heartbeat repeats the student's current app (and page URL); an
    ``app_focus`` moves to another app or page (40 % of them web pages with a URL).
    """
    rng = random.Random(seed)
    focus: dict[int, dict[str, object]] = {}
    events: list[dict[str, object]] = []
    for i in range(count):
        student = rng.randrange(2000)
        roll = rng.random()
        kind = "heartbeat" if roll < 0.75 else "app_focus" if roll < 0.95 else "idle"
        if roll > 0.99:
            kind = "logout"
        if kind == "app_focus" or (kind == "heartbeat" and student not in focus):
            if rng.random() < 0.4:
                page = f"/page/{rng.randrange(1000)}?ref=cs"
                focus[student] = {"app": "web", "url": f"https://{rng.choice(SITES)}{page}"}
            else:
                focus[student] = {"app": rng.choice(APPS), "sub_app": f"unit-{rng.randrange(12)}"}
        event: dict[str, object] = {
            "v": 1,
            "event_id": f"{student:05d}-{i:010d}-{rng.getrandbits(32):08x}",
            "kind": kind,
            "ts": NOW_MS - 60_000 + i * 3,
            "district_id": f"d-{student % 4:03d}",
            "student_id": f"s-{student:06d}",
            "device_id": f"cb-{student:06d}",
        }
        if kind in ("heartbeat", "app_focus"):
            event.update(focus[student])
        else:
            focus.pop(student, None)
        events.append(event)
    return events


def break_some(events: list[dict[str, object]], share: float, seed: int = 2) -> int:
    """Break ``share`` of ``events`` in place, as the simulator's invalid events are; how many."""
    rng = random.Random(seed)
    broken = 0
    for event in events:
        if rng.random() >= share:
            continue
        broken += 1
        breakage = rng.randrange(6)
        if breakage == 0:
            event["v"] = 2
        elif breakage == 1:
            event["kind"] = "scroll"
        elif breakage == 2:
            event["ts"] = float(event["ts"])  # type: ignore[arg-type]
        elif breakage == 3:
            del event["student_id"]
        elif breakage == 4:
            event.update(app="web", url="notaurl")
        else:
            event["ts"] = NOW_MS + 86_400_000
    return broken


def records(
    events: list[dict[str, object]], envelope_size: int, single_share: float
) -> list[bytes]:
    """``single_share`` of the events as single-event records, the rest in envelopes."""
    cut = int(len(events) * single_share)
    singles = [orjson.dumps(e) for e in events[:cut]]
    rest = events[cut:]
    envelopes = [
        orjson.dumps(rest[i : i + envelope_size]) for i in range(0, len(rest), envelope_size)
    ]
    return singles + envelopes


def _time(fn: Callable[[Any], object], data: Sequence[Any]) -> float:
    start = time.perf_counter()
    for raw in data:
        fn(raw)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--envelope-size", type=int, default=500)
    parser.add_argument(
        "--single-share",
        type=float,
        default=0.1,
        help="share of events sent as single-event records (kcat-like producers); the rest come "
        "in envelopes, as from our collector and simulator",
    )
    parser.add_argument("--invalid-share", type=float, default=0.0)
    args = parser.parse_args()

    events = build_events(args.events)
    broken = break_some(events, args.invalid_share)
    data = records(events, args.envelope_size, args.single_share)
    count = len(events)
    del events
    decoded = sum(1 for raw in data for o in decode_record(raw, NOW_MS) if o.event is not None)
    assert decoded == count - broken, f"{decoded}/{count} events valid, {broken} broken"
    window = DEFAULT_LIMITS.ts_window(NOW_MS)
    split = sum(len(decode_split_within(raw, *window)[0]) for raw in data)
    assert split == decoded, f"decode_split_within: {split} valid, decode_record: {decoded}"
    batch: list[Record] = [(offset, None, raw, ()) for offset, raw in enumerate(data)]
    together = sum(len(events) for _records, events, _notes in worker_decoding(batch, *window))
    assert together == decoded, f"the worker's decoding: {together} valid, decode_record: {decoded}"

    def decode(raw: bytes) -> object:
        return decode_record(raw, NOW_MS, DEFAULT_LIMITS)

    def decode_split(raw: bytes) -> object:
        # What the worker does per record (the window is computed once per batch).
        return decode_split_within(raw, *DEFAULT_LIMITS.ts_window(NOW_MS))

    def decode_together(records: list[Record]) -> object:
        for _chunk in worker_decoding(records, *window):
            pass
        return None

    batch_times, split_times, decode_times, load_times = [], [], [], []
    for _ in range(args.runs):  # interleaved, so drift of the machine hits all alike
        load_times.append(_time(orjson.loads, data))
        batch_times.append(_time(decode_together, [batch]))
        split_times.append(_time(decode_split, data))
        decode_times.append(_time(decode, data))
    batch_rate = count / statistics.median(batch_times)
    split_rate = count / statistics.median(split_times)
    decode_rate = count / statistics.median(decode_times)
    load_rate = count / statistics.median(load_times)
    size = sum(map(len, data))
    print(f"{count} events ({broken} invalid) in {len(data)} records ({size / count:.0f} B/event)")
    print(
        f"worker's decoding: {batch_rate:,.0f} events/s ({batch_rate / load_rate:.3f}x)   "
        f"decode_split_within: {split_rate:,.0f} events/s ({split_rate / load_rate:.3f}x)   "
        f"decode_record: {decode_rate:,.0f} events/s ({decode_rate / load_rate:.3f}x)   "
        f"orjson.loads: {load_rate:,.0f} events/s"
    )
    print(
        f"RESULT decode_events_per_s={batch_rate:.0f} "
        f"baseline_events_per_s={load_rate:.0f} ratio={batch_rate / load_rate:.3f} "
        f"split_events_per_s={split_rate:.0f} decode_record_events_per_s={decode_rate:.0f}"
    )


if __name__ == "__main__":
    main()
