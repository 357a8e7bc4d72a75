"""The worker's scaling curve: envelopes topic of 8 and of 16 partitions, 1 and 2 worker processes.

For each partition count it pre-loads the same simulator events (:mod:`producers.simulator_model`,
duplicates, reordering and 1 % invalid events) as per-partition envelopes into a fresh topic of that
many partitions, then runs ``csync worker`` processes (the real faust shell, one consumer group)
from ``/readyz`` to the last event counted, as :mod:`bench.bench_worker` does, and in the same run
the raw aiokafka consume + ``orjson.loads`` loop over the same topic. Prints one ``RESULT`` line per
point of the curve (median of ``--runs``)::

    RESULT name=scaling_8p_1w ours_events_per_s=... baseline_events_per_s=... ratio=...

Kept short (it runs inside ``make bench``): fewer events than the worker benchmark, so the start-up
of a worker is left out of each figure but a figure is a second or so of work. It starts its own
Kafka (csync.stack, free ports, temp dir) unless ``KAFKA_BOOTSTRAP`` is set. The machine may be
shared: numbers are noisy, compare ratios, and with 2 cores 2 workers share them with the broker.

    .venv/bin/python bench/bench_scaling.py [--events 300000] [--runs 3] [--partitions 8,16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_worker import load, ours, raw_loop, run_settings, sim_items  # noqa: E402
from csync import stack as local_stack  # noqa: E402
from csync.settings import Settings  # noqa: E402
from csync.topics import create_topics, worker_topic_specs  # noqa: E402


async def curve(
    base: Settings, events: int, students: int, partitions: list[int], workers: list[int],
    runs: int, tmp: Path,
) -> None:  # fmt: skip
    """Print one ``RESULT`` line per (partitions, workers) point."""
    items = sim_items(events, students)
    run = uuid.uuid4().hex[:6]
    for count in partitions:
        topic = f"bench-scaling-{run}-{count}p"
        s = run_settings(base.replace(partitions=count), topic)
        await create_topics(s, worker_topic_specs(s))
        t0 = time.perf_counter()
        records = await load(s, topic, items, single=False)
        print(
            f"loaded {records:,} envelopes into {count} partitions in {time.perf_counter() - t0:.1f}s"
        )
        for n in workers:
            ours_runs, raw_runs = [], []
            for _ in range(runs):
                rs = run_settings(base.replace(partitions=count), topic)
                await create_topics(rs, worker_topic_specs(rs))
                ours_runs.append(await asyncio.to_thread(ours, rs, n, len(items), tmp))
                raw_runs.append(await raw_loop(rs, topic, len(items)))
            o, r = statistics.median(ours_runs), statistics.median(raw_runs)
            print(
                f"RESULT name=scaling_{count}p_{n}w partitions={count} workers={n} "
                f"ours_events_per_s={o:.0f} baseline_events_per_s={r:.0f} ratio={o / r:.2f} "
                f"runs={runs} ours_all={[round(x) for x in ours_runs]} "
                f"raw_all={[round(x) for x in raw_runs]}",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
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
