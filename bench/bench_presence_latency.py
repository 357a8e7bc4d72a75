"""Presence latency: from an event's production to its presence hash in Redis, at 5,000 events/s.

A stream worker (``csync worker``) and the Redis sink (``csync sink redis``) run as their own
processes with the shipped settings. This script produces envelopes at the target rate, as the collector does
(per-partition envelopes, a few milliseconds apart); every event focuses a new sub-app, so each one is a
presence change. It samples one event in ``--sample`` and polls Redis every few milliseconds until the
student's hash holds that event's ``ts`` (or a newer one, which makes the figure an upper bound).

Baseline, in the same run: the same events read back from the activity topic by a plain aiokafka consumer
tuned for latency — the part of the delay that is Kafka alone. Also in the same run, the sampled events' presence
changes as a plain ``read_committed`` consumer of the presence topic sees them: production → the worker's output,
the worker's share of the latency (the rest is the Redis sink's).

Each of ``--runs`` (default 3) runs lasts ``--seconds``; the figures are the medians over runs. Uses the stack
in the environment (``make bench`` starts one), else starts a throw-away one.

    .venv/bin/python bench/bench_presence_latency.py [--rate 5000] [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from csync import stack as local_stack
from csync.settings import PROJECT_ROOT, Settings
from csync.topics import create_topics
from producers.collector import make_producer
from schemas.envelope import cut_envelopes
from schemas.routing import partition_for_key
from streams.worker import worker_command

DISTRICT = "d-bench"
TICK_S = 0.01
TIMED_WORKER = Path(__file__).resolve().parent / "worker_timed.py"
# The stages of the breakdown, in the order an event meets them (bench/worker_timed.py), and the
# Redis sink's write of a batch.
STAGES = ("poll", "process", "intent_ack", "emit_ack", "snapshot", "handle", "sink_flush")
Buckets = dict[str, dict[float, float]]  # stage -> {upper bound: cumulative count}


def scrape(port: int) -> Buckets:
    """The stage histograms' buckets on ``/metrics`` of ``port`` (worker or Redis sink)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return {}
    out: Buckets = {}
    for line in text.splitlines():
        if line.startswith("csync_bench_worker_stage_seconds_bucket{"):
            stage = line.split('stage="', 1)[1].split('"', 1)[0]
        elif line.startswith("csync_sink_batch_seconds_bucket{") and 'sink="redis"' in line:
            stage = "sink_flush"
        else:
            continue
        le = line.split('le="', 1)[1].split('"', 1)[0]
        out.setdefault(stage, {})[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def scrape_all(ports: list[int]) -> Buckets:
    """The stage histograms of several processes, added up."""
    total: Buckets = {}
    for port in ports:
        for stage, buckets in scrape(port).items():
            into = total.setdefault(stage, {})
            for le, n in buckets.items():
                into[le] = into.get(le, 0.0) + n
    return total


def stage_p99(before: Buckets, after: Buckets) -> dict[str, tuple[float, float, float]]:
    """Per stage, ``(calls, p99 ms, max ms)`` of the calls between two scrapes (each the upper
    bound of the bucket that holds it)."""
    result: dict[str, tuple[float, float, float]] = {}
    for stage, buckets in after.items():
        old = before.get(stage, {})
        delta = sorted((le, n - old.get(le, 0.0)) for le, n in buckets.items())
        calls = delta[-1][1]
        if not calls:
            continue
        p99 = next(le for le, n in delta if n >= 0.99 * calls)
        top = next(le for le, n in delta if n >= calls)
        result[stage] = (calls, p99 * 1000, top * 1000)
    return result


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 of ``values`` (milliseconds)."""
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


class Load:
    """Produces ``rate`` events/s over ``students``; remembers when sampled events were sent."""

    def __init__(self, settings: Settings, students: int, sample: int) -> None:
        self.settings = settings
        self.students = students
        self.sample = sample
        self.seq = 0
        self.pending: dict[str, tuple[int, float]] = {}
        """Sampled student key → (event ts, wall time sent)."""
        self.emitted: dict[bytes, tuple[int, float]] = {}
        """The same samples, until the worker's presence change for them is on the presence topic."""
        self.presence_ms: list[float] = []
        self.topic_ms: list[float] = []
        self.kafka_ms: list[float] = []

    def events(self, n: int, now_ms: int) -> dict[int, list[bytes]]:
        partitions = self.settings.partitions
        out: dict[int, list[bytes]] = {}
        for _ in range(n):
            self.seq += 1
            student = f"s-{self.seq % self.students:06d}"
            event = {
                "v": 1,
                "event_id": f"e{self.seq}",
                "kind": "app_focus",
                "ts": now_ms,
                "district_id": DISTRICT,
                "student_id": student,
                "device_id": f"cb-{student}",
                "app": "docs",
                "sub_app": f"v{self.seq}",
            }
            key = f"{DISTRICT}:{student}"
            out.setdefault(partition_for_key(key.encode(), partitions), []).append(
                orjson.dumps(event)
            )
            if self.seq % self.sample == 0 and key not in self.pending:
                self.pending[key] = self.emitted[key.encode()] = (now_ms, time.time())
        return out

    async def produce(self, rate: float, seconds: float, measuring: bool = True) -> float:
        """Send for ``seconds`` at ``rate``; return the rate achieved."""
        producer = make_producer(self.settings)
        await producer.start()
        sent = 0
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(rate * (elapsed + TICK_S)) - sent
                if due > 0:
                    groups = self.events(due, int(time.time() * 1000))
                    for partition, members in groups.items():
                        for value in cut_envelopes(members):
                            await producer.send(
                                self.settings.topic_activity, value, partition=partition
                            )
                    sent += due
                await asyncio.sleep(TICK_S)
            await producer.flush()
        finally:
            await producer.stop()
        if not measuring:
            self.pending.clear()
            self.emitted.clear()
        return sent / (time.monotonic() - started)

    async def watch_redis(self, redis: Redis, stop: asyncio.Event, record: bool) -> None:
        """Poll the sampled students' hashes; a sample is done once ``ts`` reached its event's ts."""
        prefix = self.settings.key_prefix
        while not stop.is_set() or self.pending:
            keys = list(self.pending)
            if keys:
                pipe = redis.pipeline(transaction=False)
                for key in keys:
                    pipe.hget(f"{prefix}:presence:{key}", "ts")
                now = time.time()
                for key, ts in zip(keys, await pipe.execute(), strict=True):
                    event_ts, sent_at = self.pending[key]
                    if ts is not None and int(ts) >= event_ts:
                        del self.pending[key]
                        if record:
                            self.presence_ms.append((now - sent_at) * 1000)
            if stop.is_set() and time.monotonic() > self.give_up:
                self.unseen += len(self.pending)
                self.pending.clear()
            await asyncio.sleep(0.005)

    give_up = float("inf")
    unseen = 0

    async def watch_presence_topic(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Production → the worker's presence change on the presence topic (the worker's share)."""
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for record in records:
                    sampled = self.emitted.get(record.key)
                    if sampled and orjson.loads(record.value)["ts"] >= sampled[0]:
                        del self.emitted[record.key]
                        self.topic_ms.append((now - sampled[1]) * 1000)

    async def watch_kafka(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """The baseline: production → a plain consumer, for every event."""
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now_ms = time.time() * 1000
            for records in batches.values():
                for record in records:
                    for event in orjson.loads(record.value):
                        self.kafka_ms.append(now_ms - event["ts"])


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1", **extra}


async def run(settings: Settings, args: argparse.Namespace, log_dir: Path) -> None:
    await create_topics(settings)
    procs = []
    worker = [sys.executable, str(TIMED_WORKER), "--loglevel", "info"]
    worker_ports = [settings.worker_web_port]
    worker_ports += [local_stack.free_port() for _ in range(args.workers - 1)]
    runs: list[tuple[str, list[str], dict[str, str]]] = [
        (f"worker{n}", worker if args.breakdown else worker_command(),
         child_env(settings, WORKER_WEB_PORT=str(port)))
        for n, port in enumerate(worker_ports)
    ]  # fmt: skip
    runs.append(("sink-redis", [sys.executable, "-m", "csync.cli", "sink", "redis"],
                 child_env(settings)))  # fmt: skip
    for name, cmd, env in runs:
        log = (log_dir / f"presence-{name}.log").open("wb")
        procs.append(
            subprocess.Popen(  # noqa: S603 - our interpreter and modules
                cmd,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        )
    ports = [*worker_ports, settings.sink_redis_metrics_port]
    redis = Redis.from_url(settings.redis_url)
    load = Load(settings, args.students, args.sample)
    try:
        # Warm up until the pipeline answers (partitions assigned, roster/state caught up).
        deadline = time.monotonic() + 120
        warm = asyncio.Event()
        watcher = asyncio.ensure_future(load.watch_redis(redis, warm, record=False))
        ready = False
        while not ready and time.monotonic() < deadline:
            await load.produce(args.rate, 2.0)
            for _ in range(30):
                await asyncio.sleep(0.1)
                if not load.pending:
                    ready = True
                    break
        if not ready:
            raise SystemExit("the worker and the Redis sink did not answer within 120 s")
        await load.produce(args.rate, 3.0)
        load.give_up = time.monotonic() + 5
        warm.set()
        await watcher
        summary: dict[str, list[float]] = {}
        for n in range(args.runs):
            load.presence_ms.clear()
            load.kafka_ms.clear()
            load.topic_ms.clear()
            load.emitted.clear()
            consumer = AIOKafkaConsumer(
                settings.topic_activity,
                bootstrap_servers=settings.kafka_bootstrap,
                group_id=f"bench-latency-{uuid.uuid4().hex[:6]}",
                auto_offset_reset="latest",
                fetch_max_wait_ms=5,
            )
            await consumer.start()
            await consumer.seek_to_end()
            changes = AIOKafkaConsumer(
                settings.topic_presence,
                bootstrap_servers=settings.kafka_bootstrap,
                group_id=f"bench-latency-{uuid.uuid4().hex[:6]}",
                auto_offset_reset="latest",
                isolation_level="read_committed",  # what the Redis sink reads
                fetch_max_wait_ms=5,
            )
            await changes.start()
            await changes.seek_to_end()
            before = scrape_all(ports)
            stop = asyncio.Event()
            load.give_up = float("inf")
            watchers = [
                asyncio.ensure_future(load.watch_redis(redis, stop, record=True)),
                asyncio.ensure_future(load.watch_kafka(consumer, stop)),
                asyncio.ensure_future(load.watch_presence_topic(changes, stop)),
            ]
            achieved = await load.produce(args.rate, args.seconds)
            load.give_up = (
                time.monotonic() + 10
            )  # a sample not seen by then is dropped (and counted)
            stop.set()
            load.unseen = 0
            await asyncio.gather(*watchers)
            await consumer.stop()
            await changes.stop()
            stages = stage_p99(before, scrape_all(ports))
            p = percentiles(load.presence_ms)
            k = percentiles(load.kafka_ms)
            w = percentiles(load.topic_ms)
            print(
                f"run {n + 1}: {achieved:,.0f} ev/s; presence p50/p95/p99 {p[0]:.0f}/{p[1]:.0f}/"
                f"{p[2]:.0f} ms ({len(load.presence_ms)} samples, {load.unseen} unseen after 10 s); Kafka "
                f"alone {k[0]:.0f}/{k[1]:.0f}/{k[2]:.0f} ms; on the presence topic "
                f"{w[0]:.0f}/{w[1]:.0f}/{w[2]:.0f} ms",
                flush=True,
            )
            if stages:
                print(
                    "  breakdown, p99/max of one call (calls): "
                    + ", ".join(
                        f"{st} {stages[st][1]:.0f}/{stages[st][2]:.0f} ms ({stages[st][0]:.0f})"
                        for st in STAGES
                        if st in stages
                    ),
                    flush=True,
                )
            for st in STAGES:
                if st in stages:
                    summary.setdefault(f"stage_{st}_p99_ms", []).append(stages[st][1])
                    summary.setdefault(f"stage_{st}_max_ms", []).append(stages[st][2])
            for key, value in (
                ("rate_per_s", achieved), ("presence_p50_ms", p[0]), ("presence_p95_ms", p[1]),
                ("presence_p99_ms", p[2]), ("kafka_p50_ms", k[0]), ("kafka_p95_ms", k[1]),
                ("kafka_p99_ms", k[2]), ("topic_p50_ms", w[0]), ("topic_p95_ms", w[1]),
                ("topic_p99_ms", w[2]), ("samples", float(len(load.presence_ms))),
            ):  # fmt: skip
                summary.setdefault(key, []).append(value)
        medians = " ".join(f"{k}={statistics.median(v):.1f}" for k, v in summary.items())
        print(f"RESULT {medians} runs={args.runs}")
    finally:
        for proc in procs:
            local_stack._terminate(proc.pid, grace_s=10)
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (one group)")
    parser.add_argument("--sample", type=int, default=25, help="Sample one event in this many.")
    parser.add_argument(
        "--no-breakdown", dest="breakdown", action="store_false",
        help="run csync worker itself, without the stage timings of bench/worker_timed.py",
    )  # fmt: skip
    args = parser.parse_args()
    unique = uuid.uuid4().hex[:8]
    base = Settings.from_env()
    running = local_stack.Stack.load(Path(base.data_dir))
    root: Path | None = None
    if running is None:
        root = Path(tempfile.mkdtemp(prefix="csync-bench-"))
        running = local_stack.up(
            root, kafka_port=local_stack.free_port(), redis_port=local_stack.free_port(),
            persist_redis=False,
        )  # fmt: skip
    data_dir = Path(tempfile.mkdtemp(prefix="csync-latency-"))
    settings = base.replace(
        kafka_bootstrap=running.kafka_bootstrap, redis_url=running.redis_url,
        data_dir=str(data_dir), key_prefix=f"bl{unique}",
        topic_activity=f"bl{unique}-activity", topic_roster=f"bl{unique}-roster",
        topic_dlq=f"bl{unique}-dlq", topic_presence=f"bl{unique}-presence",
        topic_usage_cells=f"bl{unique}-cells", topic_worker_state=f"bl{unique}-state",
        topic_day_keys=f"bl{unique}-day-keys", worker_group=f"bl{unique}-worker",
        sink_group_redis=f"bl{unique}-sink-redis", sink_group_clickhouse=f"bl{unique}-sink-ch",
        worker_web_port=local_stack.free_port(), sink_redis_metrics_port=local_stack.free_port(),
    )  # fmt: skip
    try:
        asyncio.run(run(settings, args, data_dir))
    finally:
        if root is not None:
            local_stack.down(root)


if __name__ == "__main__":
    main()
