"""Producer throughput: the simulator and the collector, each beside a raw aiokafka producer
sending the same bytes, against a real broker.

Uses the running local stack (``KAFKA_BOOTSTRAP`` or ``csync stack up``) if there is one, else
starts a throw-away broker. Topics get unique names.

    .venv/bin/python bench/bench_producers.py [--events 100000] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from csync import stack as local_stack
from csync.settings import Settings
from csync.topics import create_topics
from producers.collector import Collector, add_token, load_tokens, make_app, make_producer
from producers.simulator import SendOptions, build_records, default_compression, run_simulation
from producers.simulator_model import SimulationConfig, generate, wire_object
from schemas.event import ActivityEvent

CONFIG = SimulationConfig(seed=1, districts=2, schools_per_district=4, classes_per_school=8)


async def raw_send(
    settings: Settings, records: list[tuple[int | None, bytes | None, bytes]]
) -> float:
    """Seconds a plain idempotent producer takes to send and get acks for ``records``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all",
        compression_type=default_compression(), linger_ms=10, max_batch_size=2 * 1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(settings.topic_activity, value, key=key, partition=partition)
            for partition, key, value in records
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def bench_simulator(settings: Settings, events: int) -> tuple[float, float]:
    options = SendOptions(count=events, speed=0, with_roster=False)
    started = time.perf_counter()
    report = await run_simulation(settings, CONFIG, options, progress=io.StringIO())
    sim_rate = events / (time.perf_counter() - started)
    items = generate(CONFIG, 1_764_403_200_000, events)
    records = [(p, k, v) for p, k, v, _ in build_records(items, settings.partitions, False)]
    raw_rate = events / await raw_send(settings, records)
    assert report.events_sent + report.invalid_sent == events
    return sim_rate, raw_rate


async def bench_collector(settings: Settings, events: int, clients: int) -> tuple[float, float]:
    tokens = Path(settings.data_dir) / "bench_tokens.json"
    add_token(tokens, "bench", "d-001")
    config = SimulationConfig(seed=2, districts=1, schools_per_district=4, classes_per_school=8)
    now = int(time.time() * 1000)
    items = [i for i in generate(config, now - 3_600_000, events) if isinstance(i, ActivityEvent)]
    bodies = [
        orjson.dumps([wire_object(i) for i in items[j : j + 500]])
        for j in range(0, len(items), 500)
    ]  # noqa: E501
    producer = make_producer(settings)
    await producer.start()
    collector = Collector(settings, load_tokens(tokens), producer)
    await collector.start()
    runner = web.AppRunner(make_app(collector))
    await runner.setup()
    port = local_stack.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    accepted = 0
    try:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        async with aiohttp.ClientSession() as session:

            async def client() -> None:
                nonlocal accepted
                while not queue.empty():
                    body = queue.get_nowait()
                    async with session.post(
                        f"http://127.0.0.1:{port}/v1/events", data=body,
                        headers={"Authorization": "Bearer bench"},
                    ) as resp:  # fmt: skip
                        assert resp.status == 200, await resp.text()
                        accepted += (await resp.json())["accepted"]

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            collector_rate = accepted / (time.perf_counter() - started)
    finally:
        await runner.cleanup()
        await producer.stop()
    records = [(p, k, v) for p, k, v, _ in build_records(list(items), settings.partitions, False)]
    raw_rate = len(items) / await raw_send(settings, records)
    return collector_rate, raw_rate


async def main_async(args: argparse.Namespace, bootstrap: str, data_dir: str) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = Settings.from_env(
        env={}, kafka_bootstrap=bootstrap, data_dir=data_dir,
        topic_activity=f"bench{unique}-activity", topic_roster=f"bench{unique}-roster",
        topic_dlq=f"bench{unique}-dlq", topic_presence=f"bench{unique}-presence",
        topic_usage_cells=f"bench{unique}-cells", collector_token_rate=1e9,
    )  # fmt: skip
    await create_topics(settings)
    sim, raw = await bench_simulator(settings, args.events)
    print(f"simulator: {sim:,.0f} events/s, raw producer same bytes: {raw:,.0f} events/s")
    print(
        f"RESULT simulator_events_per_s={sim:.0f} raw_events_per_s={raw:.0f} ratio={sim / raw:.3f}"
    )
    col, raw2 = await bench_collector(settings, args.events, args.clients)
    print(f"collector: {col:,.0f} accepted events/s, raw producer same bytes: {raw2:,.0f} events/s")
    print(
        f"RESULT collector_events_per_s={col:.0f} raw_events_per_s={raw2:.0f} "
        f"ratio={col / raw2:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    base = Settings.from_env()
    running = local_stack.Stack.load(Path(base.data_dir))
    if running is not None:
        asyncio.run(main_async(args, running.kafka_bootstrap, tempfile.mkdtemp()))
        return
    root = Path(tempfile.mkdtemp(prefix="csync-bench-"))
    stack = local_stack.up(
        root, kafka_port=local_stack.free_port(), redis_port=local_stack.free_port(),
        persist_redis=False,
    )  # fmt: skip
    try:
        asyncio.run(main_async(args, stack.kafka_bootstrap, str(root / "data")))
    finally:
        local_stack.down(root)


if __name__ == "__main__":
    main()
