"""Sink throughput beside the raw client doing the same writes; median of 3; prints ``RESULT`` lines.

ClickHouse: the sink's flush (decode → Arrow → one insert_arrow into the Null table + views) vs a raw
``insert_arrow`` of the same rows straight into a plain MergeTree table. Redis: the sink's pipelined Lua calls
vs a raw pipelined HSET+EXPIRE loop. Runs its own redis-server and chDB folder in a temporary directory.

    .venv/bin/python bench/bench_sinks.py [--rows 200000] [--changes 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from schemas.internal import PresenceChange, UsagePartial
from sinks.clickhouse_client import clickhouse_client
from sinks.clickhouse_sink import ClickHouseUsageSink
from sinks.migrate import migrate
from sinks.redis_presence import RedisPresenceSink

T0 = 1_767_225_600


def median_of_3(run: Callable[[int], float]) -> float:
    return statistics.median(run(i) for i in range(3))


def bench_clickhouse(root: Path, n_rows: int) -> None:
    client = clickhouse_client(f"chdb://{root / 'chdb'}")
    per_record = 100
    records = []
    for i in range(n_rows // per_record):
        rows = tuple(
            (T0 + 60 * (j % 30), f"app{j % 7}", f"sub{j % 50}", i * per_record + j, 1_000)
            for j in range(per_record)
        )
        value = UsagePartial(0, i, i, rows).encode()
        records.append(ConsumerRecord("u", 0, i, 0, 0, None, value, None, 0, len(value), []))
    flat = [r for rec in records for r in UsagePartial.decode(rec.value).rows]  # type: ignore[arg-type]
    table = pa.table(
        {
            "minute": pa.array([r[0] for r in flat], pa.uint32()),
            "app": [r[1] for r in flat],
            "sub_app": [r[2] for r in flat],
            "student_token": pa.array([r[3] for r in flat], pa.uint64()),
            "active_ms": pa.array([r[4] for r in flat], pa.uint64()),
        }
    )

    def sink_run(i: int) -> float:
        db = f"bench_sink_{i}"
        migrate(client, db, ttl_days=730, k_anonymity=10)
        sink = ClickHouseUsageSink(client, db)
        start = time.perf_counter()
        for rec in records:
            sink.add(rec)
        asyncio.run(sink.flush())
        elapsed = time.perf_counter() - start
        client.command(f"DROP DATABASE {db}")
        return len(flat) / elapsed

    def raw_run(i: int) -> float:
        db = f"bench_raw_{i}"
        client.command(f"CREATE DATABASE {db}")
        client.command(
            f"CREATE TABLE {db}.t (minute DateTime('UTC'), app String, sub_app String, "
            "student_token UInt64, active_ms UInt64) ENGINE = MergeTree ORDER BY (minute, app, sub_app)"
        )
        start = time.perf_counter()
        client.insert_arrow(f"{db}.t", table)
        elapsed = time.perf_counter() - start
        client.command(f"DROP DATABASE {db}")
        return len(flat) / elapsed

    print(f"RESULT clickhouse_sink_rows_per_s={median_of_3(sink_run):.0f} rows={len(flat)}")
    print(
        f"RESULT clickhouse_raw_insert_arrow_rows_per_s={median_of_3(raw_run):.0f} rows={len(flat)}"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench_redis(port: int, n: int) -> None:
    redis = Redis(port=port)
    changes = [
        PresenceChange("d1", f"s{i % 5000}", f"N{i}", True, "docs", f"x{i % 40}", 1_000 + i)
        for i in range(n)
    ]
    batch = 500

    async def sink_run(i: int) -> float:
        sink = RedisPresenceSink(redis, key_prefix=f"bs{i}", rewind_when_empty=False)
        start = time.perf_counter()
        for k in range(0, n, batch):
            for c in changes[k : k + batch]:
                sink.add_change(c)
            await sink.flush()
        return n / (time.perf_counter() - start)

    async def raw_run(i: int) -> float:
        start = time.perf_counter()
        for k in range(0, n, batch):
            pipe = redis.pipeline(transaction=False)
            for c in changes[k : k + batch]:
                key = f"br{i}:presence:{c.district_id}:{c.student_id}"
                pipe.hset(key, mapping={"name": c.name, "online": "1", "app": c.app,
                                        "sub_app": c.sub_app, "ts": c.ts})  # fmt: skip
                pipe.expire(key, 86_400)
            await pipe.execute()
        return n / (time.perf_counter() - start)

    sink_rates = [await sink_run(i) for i in range(3)]
    raw_rates = [await raw_run(i) for i in range(3)]
    print(f"RESULT redis_sink_changes_per_s={statistics.median(sink_rates):.0f} changes={n}")
    print(f"RESULT redis_raw_pipelined_hset_per_s={statistics.median(raw_rates):.0f} changes={n}")
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changes", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench_clickhouse(root, args.rows)
        port = free_port()
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.5)
            asyncio.run(bench_redis(port, args.changes))
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
