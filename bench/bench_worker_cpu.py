"""The worker's CPU cost per event without Kafka: where the time of a batch goes, stage by stage.

Builds the records ``bench_worker.py`` loads (simulator envelopes or single-event records, 1 %
invalid, duplicates, reordering), splits them per partition into batches of ``--batch`` records
and times, on the same records in the same process:

- ``loads``: ``orjson.loads`` of every record value (the raw loop's per-record work);
- ``decode``: the batch loop's decoding (``streams.partition._decoded``: runs of single-event
  records judged together, envelopes one by one, valid events and notes apart);
- ``decode_record``: :func:`schemas.decoder.decode_record` of every record (an outcome per event);
- ``decode_route``: plus the partition check of every valid event (``partition_for_key``);
- ``group``: decode and group the valid events per student, route once per student;
- ``presence``: ``group`` plus the presence rule (no usage);
- ``batch``: the whole :func:`streams.partition.process_batch` (decode, route, presence, usage,
  expiry, close) — presence and usage costs are its difference with ``decode_route``;
- ``emit``: ``batch`` plus the CPU of emitting (``to_rows`` with a real token store,
  ``PresenceChange.encode``, ``UsagePartial.encode``) — what the engine does besides Kafka I/O.

Prints ``RESULT`` lines (median of ``--runs``, process CPU time), events/s and µs per event for each stage::

    RESULT name=cpu_envelopes stage=batch events_per_s=... us_per_event=... ratio_to_loads=...

    .venv/bin/python bench/bench_worker_cpu.py [--events 300000] [--students 2000] [--single]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producers.simulator import build_records  # noqa: E402
from schemas.decoder import Limits, decode_record, decode_split_within  # noqa: E402
from schemas.event import ActivityEvent  # noqa: E402
from schemas.internal import UsagePartial  # noqa: E402
from schemas.routing import partition_for_key  # noqa: E402
from streams.batch_log import Intent  # noqa: E402
from streams.partition import Params, Record, new_state, params_of, process_batch  # noqa: E402
from streams.partition import _decoded as decoded_chunks  # noqa: E402
from streams.student_token import DayKeyStore  # noqa: E402
from streams.usage import to_rows  # noqa: E402

Batches = dict[int, list[list[Record]]]


def make_batches(events: int, students: int, single: bool, partitions: int, per: int) -> Batches:
    from bench.bench_worker import sim_items

    items = sim_items(events, students)
    per_partition: dict[int, list[Record]] = {}
    for p, key, value, _items in build_records(items, partitions, single):
        recs = per_partition.setdefault(p, [])
        recs.append((len(recs), key, value, ()))
    return {
        p: [recs[i : i + per] for i in range(0, len(recs), per)]
        for p, recs in sorted(per_partition.items())
    }


def count_events(batches: Batches) -> int:
    n = 0
    for bs in batches.values():
        for b in bs:
            for _o, _k, v, _h in b:
                assert v is not None  # noqa: S101
                obj = orjson.loads(v)
                n += len(obj) if isinstance(obj, list) else 1
    return n


def stage_loads(batches: Batches, params: Params, now: int) -> None:
    loads = orjson.loads
    for bs in batches.values():
        for b in bs:
            for rec in b:
                loads(rec[2])  # type: ignore[arg-type]


def stage_decode(batches: Batches, params: Params, now: int) -> None:
    for bs in batches.values():
        for b in bs:
            min_ts, max_ts = params.limits.ts_window(now)  # once per batch, as the worker does
            for _chunk in decoded_chunks(b, min_ts, max_ts):
                pass


def stage_decode_record(batches: Batches, params: Params, now: int) -> None:
    for bs in batches.values():
        for b in bs:
            for rec in b:
                decode_record(rec[2], now, params.limits)  # type: ignore[arg-type]


def stage_decode_route(batches: Batches, params: Params, now: int) -> None:
    n = params.partitions
    for bs in batches.values():
        for b in bs:
            window = params.limits.ts_window(now)
            for rec in b:
                for ev in decode_split_within(rec[2], *window)[0]:  # type: ignore[arg-type]
                    partition_for_key(f"{ev.district_id}:{ev.student_id}".encode(), n)


def _grouped(b: list[Record], params: Params, now: int) -> dict[str, list[ActivityEvent]]:
    """Decode a batch and group its valid events per student, as process_batch does."""
    groups: dict[str, list[ActivityEvent]] = {}
    window = params.limits.ts_window(now)
    for rec in b:
        for ev in decode_split_within(rec[2], *window)[0]:  # type: ignore[arg-type]
            skey = f"{ev.district_id}:{ev.student_id}"
            group = groups.get(skey)
            if group is None:
                groups[skey] = [ev]
            else:
                group.append(ev)
    return groups


def stage_group(batches: Batches, params: Params, now: int) -> None:
    n = params.partitions
    routes: dict[str, int] = {}
    for bs in batches.values():
        for b in bs:
            for skey in _grouped(b, params, now):
                if skey not in routes:
                    routes[skey] = partition_for_key(skey.encode(), n)


def stage_presence(batches: Batches, params: Params, now: int) -> None:
    """decode + group + the presence rule (no usage)."""
    for p, bs in batches.items():
        state = new_state(p, params)
        clock = now
        for b in bs:
            clock += 200
            for skey, events in _grouped(b, params, now).items():
                first = events[0]
                state.presence.on_events(skey, first.district_id, first.student_id, events, clock)
            state.presence.expire(clock)


def _run_batches(batches: Batches, params: Params, now: int, emit: bool) -> None:
    store = DayKeyStore()
    for day in range(now // 86_400_000 - 4, now // 86_400_000 + 2):
        store.offer(day, 0, bytes(32))
    for p, bs in batches.items():
        state = new_state(p, params)
        clock = now
        for b in bs:
            clock += 200
            intent = Intent(p, b[0][0], b[-1][0], 0, -1, clock, True, 0)
            out = process_batch(state, b, [], intent, params)
            if emit:
                rows = to_rows(out.intervals, store.token)
                if rows:
                    UsagePartial(p, b[0][0], b[-1][0], tuple(rows)).encode()
                for ch in out.presence:
                    ch.encode()
                    ch.key  # noqa: B018 - the engine sends it as the record key


def stage_batch(batches: Batches, params: Params, now: int) -> None:
    _run_batches(batches, params, now, emit=False)


def stage_emit(batches: Batches, params: Params, now: int) -> None:
    _run_batches(batches, params, now, emit=True)


STAGES: dict[str, Callable[[Batches, Params, int], None]] = {
    "loads": stage_loads,
    "decode": stage_decode,
    "decode_record": stage_decode_record,
    "decode_route": stage_decode_route,
    "group": stage_group,
    "presence": stage_presence,
    "batch": stage_batch,
    "emit": stage_emit,
}


def state_memory(students: int) -> None:
    """Bytes of the partition states (tracemalloc) after ``4 * students`` events, by object type."""
    import tracemalloc
    from collections import Counter

    from csync.settings import Settings

    params = params_of(Settings())
    params = params._replace(limits=Limits(max_age_h=24 * 365, max_future_s=3600))
    batches = make_batches(students * 4, students, False, params.partitions, 4)
    now = int(time.time() * 1000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    states = []
    for p, bs in batches.items():
        state = new_state(p, params)
        for b in bs:
            process_batch(state, b, [], Intent(p, b[0][0], b[-1][0], 0, -1, now, False, 0), params)
        states.append(state)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n_students = sum(len(s.presence) for s in states)
    n_devices = sum(len(s.usage) for s in states)
    by_type: Counter[str] = Counter()
    seen: set[int] = set()
    stack: list[object] = list(states)
    while stack:  # every object reachable from the states, counted once
        obj = stack.pop()
        if id(obj) in seen or type(obj) in (type, type(len)):
            continue
        seen.add(id(obj))
        by_type[type(obj).__name__] += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    total = sum(by_type.values())
    print(
        f"RESULT name=state_memory students={n_students} devices={n_devices} "
        f"traced_mb_per_10k_students={(after - before) / 2**20 / n_students * 1e4:.1f} "
        f"reachable_mb_per_10k_students={total / 2**20 / n_students * 1e4:.1f}"
    )
    for name, size in by_type.most_common(10):
        print(f"  {name:<20} {size / 2**20 / n_students * 1e4:6.2f} MB per 10k students")


def main() -> None:
    from csync.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--students", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=4, help="records per partition per batch")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--single", action="store_true", help="single-event records")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--profile", action="store_true", help="cProfile the emit stage")
    ap.add_argument("--memory", type=int, default=0, help="state bytes of this many students")
    args = ap.parse_args()
    if args.memory:
        state_memory(args.memory)
        return
    params = params_of(Settings())
    params = params._replace(limits=Limits(max_age_h=24 * 365, max_future_s=3600))
    per = args.batch * (250 if args.single else 1)
    batches = make_batches(args.events, args.students, args.single, params.partitions, per)
    events = count_events(batches)
    now = int(time.time() * 1000)
    name = "cpu_single" if args.single else "cpu_envelopes"
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        stage_emit(batches, params, now)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return
    base = 0.0
    for stage in args.stages.split(","):
        times = []
        for _ in range(args.runs):
            gc.collect()
            t0 = time.process_time()  # CPU time: the machine is shared, wall time is noise
            STAGES[stage](batches, params, now)
            times.append(time.process_time() - t0)
        t = statistics.median(times)
        rate = events / t
        if stage == "loads":
            base = rate
        ratio = f" ratio_to_loads={rate / base:.3f}" if base else ""
        print(
            f"RESULT name={name} stage={stage} events_per_s={rate:.0f} "
            f"us_per_event={t / events * 1e6:.2f}{ratio} events={events} runs={args.runs}",
            flush=True,
        )


if __name__ == "__main__":
    main()
