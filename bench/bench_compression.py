"""Producer compression for the activity topic: lz4 against zstd, end to end, on the same envelopes.

For each codec, in the same run: the simulator's envelopes (:func:`producers.simulator.prepare_records`)
are produced to a fresh topic by a producer set up as the collector's and the simulator's (idempotent,
acks=all, 1 MiB batches, 5 ms linger) and timed until every record is acknowledged; then a plain consumer
reads the topic to its end and parses every record (``orjson.loads``), as the worker's poll does, and the
bytes the codec makes of the same records in producer-sized batches are counted (the share of the
network and the disk). Medians of ``--runs``; codecs interleaved::

    RESULT name=compression_lz4 produce_events_per_s=... consume_events_per_s=... bytes_pct=...

    .venv/bin/python bench/bench_compression.py [--events 300000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.codec import lz4_encode, zstd_encode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_stack import bench_kafka  # noqa: E402
from bench.bench_worker import run_settings, sim_items  # noqa: E402
from csync.settings import Settings  # noqa: E402
from csync.topics import create_topics, worker_topic_specs  # noqa: E402
from producers.simulator import prepare_records  # noqa: E402

CODECS = {"lz4": lz4_encode, "zstd": zstd_encode}
BATCH_BYTES = 1024 * 1024


def bytes_ratio(values: list[bytes], codec: str) -> float:
    """Compressed ÷ raw bytes of ``values`` cut into producer-sized batches."""
    raw = packed = 0
    chunk: list[bytes] = []
    size = 0
    for value in [*values, b""]:
        if (size + len(value) > BATCH_BYTES or not value) and chunk:
            data = b"".join(chunk)
            raw += len(data)
            packed += len(CODECS[codec](data))
            chunk, size = [], 0
        chunk.append(value)
        size += len(value)
    return packed / raw


async def produce(s: Settings, topic: str, records: list[tuple[int, bytes]], codec: str) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap, enable_idempotence=True, acks="all",
        compression_type=codec, linger_ms=5, max_batch_size=BATCH_BYTES,
        max_request_size=4 * BATCH_BYTES,
    )  # fmt: skip
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, v, partition=p) for p, v in records]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def consume(s: Settings, topic: str, records: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=s.worker_fetch_bytes,
        fetch_max_bytes=s.worker_fetch_bytes * 4,
    )  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(s.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < records:
            got = await consumer.getmany(timeout_ms=200, max_records=s.worker_batch_max)
            for msgs in got.values():
                for m in msgs:
                    orjson.loads(m.value)
                seen += len(msgs)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def _main(base: Settings, args: argparse.Namespace) -> None:
    items = sim_items(args.events, args.students)
    records = [(p, v) for p, _k, v, _m in prepare_records(items, base.partitions, False)]
    values = [v for _p, v in records]
    results: dict[str, dict[str, list[float]]] = {c: {"produce": [], "consume": []} for c in CODECS}
    for _ in range(args.runs):
        for codec in CODECS:
            topic = f"bench-comp-{uuid.uuid4().hex[:6]}-{codec}"
            s = run_settings(base, topic)
            await create_topics(s, worker_topic_specs(s))
            results[codec]["produce"].append(len(items) / await produce(s, topic, records, codec))
            results[codec]["consume"].append(len(items) / await consume(s, topic, len(records)))
    for codec in CODECS:
        prod = statistics.median(results[codec]["produce"])
        cons = statistics.median(results[codec]["consume"])
        print(
            f"RESULT name=compression_{codec} produce_events_per_s={prod:.0f} "
            f"consume_events_per_s={cons:.0f} bytes_pct={100 * bytes_ratio(values, codec):.1f} "
            f"runs={args.runs} produce_all={[round(x) for x in results[codec]['produce']]} "
            f"consume_all={[round(x) for x in results[codec]['consume']]}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--students", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with bench_kafka("bench-comp-") as (bootstrap, tmp):
        base = Settings.from_env(kafka_bootstrap=bootstrap, data_dir=str(tmp / "data"))
        asyncio.run(_main(base, args))


if __name__ == "__main__":
    main()
