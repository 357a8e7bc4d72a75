"""Stream worker throughput beside a raw aiokafka consume + ``orjson.loads`` loop over one topic.

Pre-loads simulator events (:mod:`producers.simulator_model`, with duplicates, reordering and 1 %
invalid events) into a fresh topic as the simulator sends them (per-partition envelopes), and into
a second topic as single-event records. For each topic it runs ``csync worker`` processes (the
real faust shell) from the start of the topic to its end — from ``/readyz`` to the last event
counted by ``csync_events_valid_total`` + ``csync_events_invalid_total`` on /metrics — and, in
the same run, the raw loop over the same topic. Prints ``RESULT`` lines (median of ``--runs``)::

    RESULT name=envelopes_1w ours_events_per_s=... baseline_events_per_s=... ratio=...

``--profile`` runs the engine in-process under cProfile instead and prints the top functions.
``--memory N`` feeds N students' events to one worker and prints its RSS per 10k students.
It starts its own Kafka (csync.stack, free ports, temp dir) unless ``KAFKA_BOOTSTRAP`` is set.
The machine may be shared: numbers are noisy, compare ratios.

    .venv/bin/python bench/bench_worker.py [--events 500000] [--runs 3] [--profile]
    .venv/bin/python bench/bench_worker.py --memory 100000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_stack import bench_kafka  # noqa: E402
from csync import stack as local_stack
from csync.settings import Settings
from csync.topics import worker_topic_specs
from producers.simulator import build_records
from producers.simulator_model import SimItem, SimulationConfig, generate
from schemas.event import ActivityEvent
from streams.engine import Engine
from streams.worker import worker_command, worker_env

ROOT = Path(__file__).resolve().parents[1]


def sim_items(count: int, students: int) -> list[SimItem]:
    """``count`` simulator items of about ``students`` students, ending about now."""
    per_class = 25
    config = SimulationConfig(
        seed=7,
        districts=max(1, students // (2 * 4 * per_class)),
        schools_per_district=2,
        classes_per_school=4,
        students_per_class=per_class,
        classes_per_student=1,
        dup_rate=0.01,
        reorder_rate=0.05,
        invalid_rate=0.01,
    )
    devices = students * 1.15
    span_ms = int(count / devices * 10_000) + 300_000
    return generate(config, int(time.time() * 1000) - span_ms, count)


def loader(s: Settings) -> AIOKafkaProducer:
    """The producer that pre-loads a benchmark's topic (large batches, lz4)."""
    return AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap,
        linger_ms=20,
        compression_type="lz4",
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )


async def load(s: Settings, topic: str, items: list[SimItem], single: bool) -> int:
    """Produce ``items`` in windows of 2,000 like the simulator; return the record count."""
    producer = loader(s)
    await producer.start()
    records = 0
    try:
        for i in range(0, len(items), 2000):
            for p, key, value, _m in build_records(items[i : i + 2000], s.partitions, single):
                await producer.send(topic, value, key=key, partition=p)
                records += 1
        await producer.flush()
    finally:
        await producer.stop()
    return records


async def raw_loop(s: Settings, topic: str, events: int) -> float:
    """Events/s of a plain consume + ``orjson.loads`` of every record value."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=s.worker_fetch_bytes,
        fetch_max_bytes=s.worker_fetch_bytes * 4,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(s.partitions)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        left = set(tps)
        start = time.perf_counter()
        while left:
            got = await consumer.getmany(timeout_ms=200, max_records=s.worker_batch_max)
            for tp, msgs in got.items():
                for m in msgs:
                    obj = orjson.loads(m.value)
                    seen += len(obj) if isinstance(obj, list) else 1
                if msgs and msgs[-1].offset >= end[tp] - 1:
                    left.discard(tp)
        elapsed = time.perf_counter() - start
    finally:
        await consumer.stop()
    assert seen == events, (seen, events)  # noqa: S101
    return events / elapsed


def run_settings(base: Settings, topic: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    return base.replace(
        topic_activity=topic,
        topic_dlq=f"b{run}-dlq",
        topic_presence=f"b{run}-presence",
        topic_usage_cells=f"b{run}-usage",
        topic_worker_state=f"b{run}-state",
        topic_roster=f"b{run}-roster",
        worker_group=f"csync-bench-{run}",
    )


def metrics_count(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("csync_events_valid_total ", "csync_events_invalid_total{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_worker(s: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        worker_command("warn"),
        cwd=ROOT,
        env=worker_env(s, port),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:  # noqa: S310
            return bool(r.status == 200)
    except OSError:
        return False


def ours(s: Settings, workers: int, events: int, logdir: Path) -> float:
    """Events/s of ``workers`` csync worker processes, from the moment every worker is ready
    (partitions assigned, state recovered) to the last event counted.

    Not from the first event counted: a worker that handles a whole poll at once reports its first
    events only after that poll, which would leave its processing time out of the measurement.
    """
    ports = [local_stack.free_port() for _ in range(workers)]
    procs = [start_worker(s, p, logdir / f"w{p}.log") for p in ports]
    try:
        first = last = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            now = time.perf_counter()
            if not first:
                # the time the first successful probe was sent: a worker busy with its first poll
                # answers late, but it was not ready when the previous probe got its 503
                if all(ready(p) for p in ports):
                    first = now
            elif sum(metrics_count(p) for p in ports) >= events:
                last = now
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited; see {logdir}")
            time.sleep(0.02)
        if not last:
            raise RuntimeError(f"workers did not finish; see {logdir}")
        return events / (last - first)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def profile(s: Settings, events: int, top: int) -> None:
    engine = Engine(s)
    await engine.start()
    prof = cProfile.Profile()
    # From the first poll on: an envelope topic is processed in a few polls, which a profiler
    # started at the first counted event would miss.
    prof.enable()
    start = time.perf_counter()
    task = asyncio.create_task(engine.run())
    while engine.processed_events + engine.invalid_events < events * 0.97:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    prof.disable()
    engine.request_stop()
    await task
    await engine.stop()
    print(f"PROFILE events/s under cProfile ~{engine.processed_events / elapsed:,.0f}")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--students", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--memory", type=int, default=0, help="students for the RSS measurement")
    args = ap.parse_args()
    with bench_kafka("bench-worker-") as (bootstrap, tmp):
        base = Settings.from_env(kafka_bootstrap=bootstrap, data_dir=str(tmp / "data"))
        asyncio.run(_main(base, args, tmp))


async def _main(base: Settings, args: argparse.Namespace, tmp: Path) -> None:
    from csync.topics import create_topics

    if args.memory:
        await memory(base, args.memory, tmp)
        return
    t0 = time.perf_counter()
    items = sim_items(args.events, args.students)
    print(f"generated {len(items):,} simulator items in {time.perf_counter() - t0:.1f}s")
    run = uuid.uuid4().hex[:6]
    cases = [("envelopes", False, [1]), ("single", True, [1, 2])]
    for name, single, worker_counts in cases:
        topic = f"bench-{run}-{name}"
        s = run_settings(base, topic)
        await create_topics(s, worker_topic_specs(s))
        t0 = time.perf_counter()
        records = await load(s, topic, items, single)
        print(f"loaded {records:,} records ({name}) in {time.perf_counter() - t0:.1f}s")
        if args.profile:
            ps = run_settings(base, topic)
            await create_topics(ps, worker_topic_specs(ps))  # provisioning is not the worker's
            await profile(ps, len(items), 25)
            continue
        for workers in worker_counts:
            ours_runs, raw_runs = [], []
            for _ in range(args.runs):
                rs = run_settings(base, topic)
                await create_topics(rs, worker_topic_specs(rs))
                ours_runs.append(await asyncio.to_thread(ours, rs, workers, len(items), tmp))
                raw_runs.append(await raw_loop(rs, topic, len(items)))
            o, r = statistics.median(ours_runs), statistics.median(raw_runs)
            print(
                f"RESULT name={name}_{workers}w ours_events_per_s={o:.0f} "
                f"baseline_events_per_s={r:.0f} ratio={o / r:.2f} runs={args.runs} "
                f"ours_all={[round(x) for x in ours_runs]} raw_all={[round(x) for x in raw_runs]}",
                flush=True,
            )


def _worker_rss(s: Settings, events: int, tmp: Path) -> int:
    """RSS (kB) of one worker once ready and done with ``events`` events (+3 s to settle)."""
    port = local_stack.free_port()
    proc = start_worker(s, port, tmp / "mem.log")
    try:
        deadline = time.monotonic() + 600
        while not ready(port) or metrics_count(port) < events:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"worker did not finish; see {tmp / 'mem.log'}")
            time.sleep(0.2)
        time.sleep(3)
        return rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)


async def memory(base: Settings, students: int, tmp: Path) -> None:
    """RSS of one worker holding ``students`` students' presence and usage state."""
    from csync.topics import create_topics

    items = sim_items(students * 4, students)
    topic = f"bench-mem-{uuid.uuid4().hex[:6]}"
    s = run_settings(base, topic)
    await create_topics(s, worker_topic_specs(s))
    await load(s, topic, items, single=False)
    # Idle: a worker of the same settings on an empty topic, once ready. (Not the loaded worker
    # before it starts: it recovers its partitions in ~1.5 s and is busy with the events by then.)
    empty = run_settings(base, f"{topic}-empty")
    await create_topics(empty, worker_topic_specs(empty))
    idle_kb = await asyncio.to_thread(_worker_rss, empty, 0, tmp)
    full_kb = await asyncio.to_thread(_worker_rss, s, len(items), tmp)
    ids = {(i.district_id, i.student_id) for i in items if isinstance(i, ActivityEvent)}
    per_10k = (full_kb - idle_kb) / 1024 / len(ids) * 10_000
    print(
        f"RESULT name=memory students={len(ids)} events={len(items)} "
        f"rss_idle_mb={idle_kb / 1024:.1f} "
        f"rss_full_mb={full_kb / 1024:.1f} state_mb_per_10k_students={per_10k:.1f} "
        f"total_mb_per_10k_students={full_kb / 1024 / len(ids) * 10_000:.1f}"
    )


if __name__ == "__main__":
    main()
