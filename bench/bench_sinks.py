"""Sink throughput beside the raw client doing the same writes; median of 3; prints ``RESULT`` lines.

ClickHouse: the sink's flush (decode → Arrow → one insert_arrow into the Null table + views) vs a raw
``insert_arrow`` of the same rows straight into a plain MergeTree table (the documented baseline), and vs a raw
``insert_arrow`` of the same rows, Arrow prebuilt, into the sink's own input table with its views and dedup token
(what ClickHouse must do for the sink whatever the Python side costs). Median of 11 interleaved runs (a busy
machine moves single runs by ±50 %). Redis: the sink's pipelined Lua calls vs a raw pipelined HSET+EXPIRE loop. Runs its own redis-server and chDB folder in a temporary directory.

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


def bench_clickhouse(root: Path, n_rows: int, runs: int = 11) -> None:
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
    flat = [r for rec in records for r in UsagePartial.decode(rec.value).rows]
    table = pa.table(
        {
            "minute": pa.array([r[0] for r in flat], pa.uint32()),
            "app": [r[1] for r in flat],
            "sub_app": [r[2] for r in flat],
            "student_token": pa.array([r[3] for r in flat], pa.uint64()),
            "active_ms": pa.array([r[4] for r in flat], pa.uint64()),
        }
    )
    # The same rows as the sink's input table holds them: with the usage-cells record each came from.
    same_input = table.append_column(
        "src_partition", pa.array([0] * len(flat), pa.uint32())
    ).append_column(
        "src_offset",
        pa.array([i for i in range(len(records)) for _ in range(per_record)], pa.uint64()),
    )

    # The sink process runs every flush on one long-lived event loop, whose executor thread does the insert;
    # so does this bench. (A fresh loop per flush would start a thread per insert, and chDB's first call on a
    # thread costs ~5 ms of set-up that the sink pays once in its life.)
    loop = asyncio.Runner()

    def sink_run(i: int) -> float:
        db = f"bench_sink_{i}"
        migrate(client, db, ttl_days=730, k_anonymity=10)
        sink = ClickHouseUsageSink(client, db)
        start = time.perf_counter()
        for rec in records:
            sink.add(rec)
        loop.run(sink.flush())
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

    def same_input_run(i: int) -> float:
        """ClickHouse's unavoidable part of the sink: the same rows into the same Null table + views."""
        db = f"bench_same_{i}"
        migrate(client, db, ttl_days=730, k_anonymity=10)
        settings = {
            "insert_deduplicate": 1,
            "insert_deduplication_token": f"bench-{i}",
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }
        start = time.perf_counter()
        client.insert_arrow(f"{db}.app_minute_in", same_input, settings=settings)
        elapsed = time.perf_counter() - start
        client.command(f"DROP DATABASE {db}")
        return len(flat) / elapsed

    # Interleaved, so that whatever else the machine does weighs on all three alike.
    rates: dict[str, list[float]] = {"sink": [], "raw": [], "same": []}
    with loop:
        for i in range(runs):
            rates["sink"].append(sink_run(i))
            rates["raw"].append(raw_run(i))
            rates["same"].append(same_input_run(i))
    sink_rate, raw_rate, same_rate = (statistics.median(rates[k]) for k in ("sink", "raw", "same"))
    print(f"RESULT clickhouse_sink_rows_per_s={sink_rate:.0f} rows={len(flat)}")
    # The documented baseline: a plain MergeTree, which neither aggregates nor records progress.
    print(f"RESULT clickhouse_raw_insert_arrow_rows_per_s={raw_rate:.0f} rows={len(flat)}")
    # The fairer floor: what the sink cannot avoid (same table, views and dedup token), Arrow prebuilt.
    print(
        f"RESULT clickhouse_raw_same_input_rows_per_s={same_rate:.0f} "
        f"sink_vs_plain_mergetree={sink_rate / raw_rate:.2f} "
        f"sink_vs_same_input={sink_rate / same_rate:.2f} "
        f"same_input_vs_plain_mergetree={same_rate / raw_rate:.2f}"
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
