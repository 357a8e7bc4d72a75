"""The worker's scaling curve: envelopes topic of 8 and of 16 partitions, 1 and 2 worker processes.

For each partition count it prepares the same simulator events (:mod:`producers.simulator_model`,
duplicates, reordering and 1 % invalid events) as per-partition envelopes. For each point it starts
``csync worker`` processes (the real faust shell, one consumer group) on a fresh, empty topic of that
many partitions, waits until every one of them is ready (the group has settled: each owns its
partitions), pauses them (SIGSTOP), produces the envelopes, resumes them and times from the
resumption to the last event counted on /metrics. In the same run, the raw aiokafka consume + ``orjson.loads`` loop reads the
same topic. One ``RESULT`` line per point of the curve (median of ``--runs``)::

    RESULT name=scaling_8p_1w ours_events_per_s=... baseline_events_per_s=... ratio=...

Why not from ``/readyz`` over a pre-loaded topic as :mod:`bench.bench_worker` does: the members of a
group get ready seconds apart, and the first would handle most of a short topic alone. Paused while
the topic fills (a few seconds, inside the group's session timeout), the workers do not share the
cores with the producer's compression; kept short, as it runs inside ``make bench``. It starts its own
Kafka (csync.stack, free ports, temp dir) unless ``KAFKA_BOOTSTRAP`` is set. The machine may be
shared: numbers are noisy, compare ratios; with 2 cores, 2 workers share them with the broker.

    .venv/bin/python bench/bench_scaling.py [--events 200000] [--runs 3] [--partitions 8,16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_worker import (  # noqa: E402
    loader,
    metrics_count,
    raw_loop,
    ready,
    run_settings,
    sim_items,
    start_worker,
)
from csync import stack as local_stack  # noqa: E402
from csync.settings import Settings  # noqa: E402
from csync.topics import create_topics, worker_topic_specs  # noqa: E402
from producers.simulator import build_records  # noqa: E402
from producers.simulator_records import Record  # noqa: E402


async def produce(s: Settings, topic: str, records: list[Record]) -> None:
    """Send prepared envelopes to their partitions (as :func:`bench.bench_worker.load`)."""
    producer = loader(s)
    await producer.start()
    try:
        for p, key, value, _items in records:
            await producer.send(topic, value, key=key, partition=p)
        await producer.flush()
    finally:
        await producer.stop()


async def all_ready(ports: list[int], procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    """Wait until every worker answers ``/readyz`` twice, 0.5 s apart (the group has settled)."""
    deadline = time.monotonic() + 300
    settled = 0
    while settled < 2:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"workers did not get ready; see {log}")
        ok = all(await asyncio.gather(*(asyncio.to_thread(ready, p) for p in ports)))
        settled = settled + 1 if ok else 0
        await asyncio.sleep(0.5 if ok else 0.2)


async def ours_live(
    s: Settings, workers: int, records: list[Record], events: int, log: Path
) -> float:
    """Events/s of ``workers`` csync worker processes that own their partitions before the
    events exist: paused (SIGSTOP) while the topic is filled, timed from their resumption to the
    last event counted.

    Not from ``/readyz`` over a pre-loaded topic as :func:`bench.bench_worker.ours`: the group's
    members get ready seconds apart, and the first one would process most of a short topic alone
    before the second joins.
    """
    ports = [local_stack.free_port() for _ in range(workers)]
    procs = [start_worker(s, p, log / f"w{p}.log") for p in ports]
    try:
        await all_ready(ports, procs, log)
        # Paused while the topic fills (2-4 s, well inside the group's 10 s session timeout): the
        # producer's compression must not share the cores with the timed consumption.
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        try:
            await produce(s, s.topic_activity, records)
        finally:
            start = time.perf_counter()
            for p in procs:
                p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 600
        while sum(metrics_count(p) for p in ports) < events:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"workers did not finish; see {log}")
            await asyncio.sleep(0.02)
        return events / (time.perf_counter() - start)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


async def curve(
    base: Settings, events: int, students: int, partitions: list[int], workers: list[int],
    runs: int, tmp: Path,
) -> None:  # fmt: skip
    """Print one ``RESULT`` line per (partitions, workers) point."""
    items = sim_items(events, students)
    run = uuid.uuid4().hex[:6]
    for count in partitions:
        records = build_records(items, count, False)
        for n in workers:
            ours_runs, raw_runs = [], []
            for r in range(runs):
                topic = f"bench-scaling-{run}-{count}p-{n}w-{r}"
                s = run_settings(base.replace(partitions=count), topic)
                await create_topics(s, worker_topic_specs(s))
                ours_runs.append(await ours_live(s, n, records, len(items), tmp))
                raw_runs.append(await raw_loop(s, topic, len(items)))
            o, r_ = statistics.median(ours_runs), statistics.median(raw_runs)
            print(
                f"RESULT name=scaling_{count}p_{n}w partitions={count} workers={n} "
                f"ours_events_per_s={o:.0f} baseline_events_per_s={r_:.0f} ratio={o / r_:.2f} "
                f"runs={runs} ours_all={[round(x) for x in ours_runs]} "
                f"raw_all={[round(x) for x in raw_runs]}",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--students", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--partitions", default="8,16", help="comma-separated partition counts")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker process counts")
    args = ap.parse_args()
    partitions = [int(p) for p in args.partitions.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    started = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        started = local_stack.up(
            tmp / "stack", kafka_port=local_stack.free_port(),
            redis_port=local_stack.free_port(), persist_redis=False,
        )  # fmt: skip
        bootstrap = started.kafka_bootstrap
    base = Settings.from_env(kafka_bootstrap=bootstrap, data_dir=str(tmp / "data"))
    try:
        asyncio.run(curve(base, args.events, args.students, partitions, workers, args.runs, tmp))
    finally:
        if started is not None:
            local_stack.down(tmp / "stack")


if __name__ == "__main__":
    main()
