"""Producer throughput: the simulator and the collector, each beside a raw aiokafka producer
sending the same record bytes, against a real broker.

Method (like with like):

- **Simulator.** :func:`producers.simulator.run_simulation` with ``count`` and ``speed=0``
  prepares its whole burst before sending, as load generators do: one pass of the model, then
  the events grouped into per-partition envelopes and encoded. Then it produces them with its
  idempotent, compressed, lingering producer and keeps the acknowledged events for the truth. The
  figure is that send phase, ``report.elapsed_s``; generation and encoding are reported beside it
  (``end to end``), which is what a paced or duration run pays as it goes. The baseline reads
  back the records the simulator produced and sends exactly those bytes (same partitions, keys,
  order per partition) with a plain ``AIOKafkaProducer`` of the same configuration (idempotent,
  ``acks=all``, same compression, linger and batch size), awaiting ``send()`` per record and
  gathering the acknowledgements at the end.
- **Collector.** The collector (aiohttp app, access log off, its own producer) serves in this
  process; the HTTP load comes from a separate process (``--clients`` keep-alive connections
  POSTing pre-built bodies of 500 events), so the bench's client does not share the collector's
  event loop. Accepted events per second are timed by the client from the first request to the
  last answer (each answer comes only after Kafka acknowledged its events). The baseline re-sends
  the collector's records, read back from its topic, with a raw producer configured like the
  collector's.

Each figure is the median of ``--runs`` runs, simulator/collector and raw runs alternating, ratio
of the medians. The machine is shared: the numbers are noisy; compare ratios of one run.

Uses the stack of ``DATA_DIR`` (``csync stack up``) if one runs, else starts a throw-away broker.
Topics get unique names.

    .venv/bin/python bench/bench_producers.py [--events 100000] [--clients 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from csync import stack as local_stack
from csync.settings import Settings
from csync.topics import create_topics
from producers.collector import (
    PRODUCER_LINGER_MS,
    Collector,
    add_token,
    load_tokens,
    make_app,
    make_producer,
    tune_gc,
)
from producers.simulator import SendOptions, default_compression, run_simulation
from producers.simulator_model import (
    SimulationConfig,
    build_population,
    generate_relative,
    shift_items,
    span_of,
)
from producers.simulator_wire import wire_object
from schemas.event import ActivityEvent

CONFIG = SimulationConfig(seed=1, districts=2, schools_per_district=4, classes_per_school=8)
Record = tuple[int, bytes | None, bytes]


async def read_records(settings: Settings, topic: str) -> list[Record]:
    """Every record of ``topic`` as ``(partition, key, value)``, in produce-time order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[int, int, Record]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                found.extend((m.timestamp, m.offset, (tp.partition, m.key, m.value or b""))
                             for m in messages)  # fmt: skip
        found.sort(key=lambda t: (t[0], t[1]))
        return [r for _, _, r in found]
    finally:
        await consumer.stop()


async def raw_send(settings: Settings, topic: str, records: list[Record], linger_ms: int) -> float:
    """Seconds a plain idempotent producer takes to send and get acks for ``records``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all",
        compression_type=default_compression(), linger_ms=linger_ms,
        max_batch_size=2 * 1024 * 1024, max_request_size=4 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    try:
        await producer.partitions_for(topic)
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value, key=key, partition=partition)
            for partition, key, value in records
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def _fresh(settings: Settings, name: str) -> Settings:
    unique = uuid.uuid4().hex[:8]
    return settings.replace(topic_activity=f"bench{unique}-{name}")


async def bench_simulator(settings: Settings, events: int) -> tuple[float, float, float]:
    """``(send-phase events/s, end-to-end events/s, raw events/s)`` of one run."""
    s = _fresh(settings, "sim")
    await create_topics(s)
    options = SendOptions(count=events, speed=0, with_roster=False)
    started = time.perf_counter()
    report = await run_simulation(s, CONFIG, options, progress=io.StringIO())
    end_to_end = events / (time.perf_counter() - started)
    assert report.events_sent + report.invalid_sent == events
    records = await read_records(s, s.topic_activity)
    assert len(records) == report.records_sent
    raw = _fresh(settings, "simraw")
    await create_topics(raw)
    raw_rate = events / await raw_send(raw, raw.topic_activity, records, options.linger_ms)
    return events / report.elapsed_s, end_to_end, raw_rate


def http_load_process(port: int, bodies: list[bytes], clients: int, out: object) -> None:
    """The HTTP load generator (a separate process): ``(accepted, seconds)`` into ``out``."""

    async def run() -> tuple[int, float]:
        queue = list(reversed(bodies))
        accepted = 0
        connector = aiohttp.TCPConnector(limit=clients)
        headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
        url = f"http://127.0.0.1:{port}/v1/events"
        async with aiohttp.ClientSession(connector=connector) as session:

            async def client() -> None:
                nonlocal accepted
                while queue:
                    body = queue.pop()
                    async with session.post(url, data=body, headers=headers) as resp:
                        answer = await resp.read()
                        assert resp.status == 200, answer
                        accepted += orjson.loads(answer)["accepted"]

            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                await resp.read()  # a warm connection before the clock starts
            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            return accepted, time.perf_counter() - started

    out.send(asyncio.run(run()))  # type: ignore[attr-defined]


def collector_bodies(events: int) -> tuple[list[ActivityEvent], list[bytes]]:
    """About ``events`` simulated events of one district, as request bodies of 500 events each."""
    config = SimulationConfig(seed=2, districts=1, schools_per_district=4, classes_per_school=8)
    relative = generate_relative(config, build_population(config), events)
    # The day ends now: every event is valid (none in the future, none too old).
    shifted = shift_items(relative, int(time.time() * 1000) - span_of(relative))
    items = [i for i in shifted if isinstance(i, ActivityEvent)]
    bodies = [
        orjson.dumps([wire_object(i) for i in items[j : j + 500]])
        for j in range(0, len(items), 500)
    ]
    return items, bodies


async def bench_collector(settings: Settings, events: int, clients: int) -> tuple[float, float]:
    """``(accepted events/s, raw events/s)`` of one run."""
    s = _fresh(settings, "col")
    await create_topics(s)
    tokens = Path(s.data_dir) / "bench_tokens.json"
    add_token(tokens, "bench", "d-001")
    items, bodies = collector_bodies(events)
    producer = make_producer(s)
    await producer.start()
    collector = Collector(s, load_tokens(tokens), producer)
    await collector.start()
    runner = web.AppRunner(make_app(collector), access_log=None)
    await runner.setup()
    port = local_stack.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tune_gc()  # as serve() does once the collector started
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    load = ctx.Process(target=http_load_process, args=(port, bodies, clients, send))
    try:
        load.start()
        while not receive.poll():
            assert load.exitcode is None or receive.poll(), "load generator died"
            await asyncio.sleep(0.05)
        accepted, seconds = receive.recv()
    finally:
        load.join(10)
        await runner.cleanup()
        await producer.stop()
    assert accepted == len(items), (accepted, len(items))
    records = await read_records(s, s.topic_activity)
    raw = _fresh(settings, "colraw")
    await create_topics(raw)
    # Configured like the collector's producer (make_producer), linger included.
    raw_rate = len(items) / await raw_send(raw, raw.topic_activity, records, PRODUCER_LINGER_MS)
    return accepted / seconds, raw_rate


async def _median_runs(runs: int, once: Callable[[], Awaitable[tuple[float, ...]]]) -> list[float]:
    results = [await once() for _ in range(runs)]
    return [statistics.median(column) for column in zip(*results, strict=True)]


async def main_async(args: argparse.Namespace, bootstrap: str, data_dir: str) -> None:
    settings = Settings.from_env(
        env={}, kafka_bootstrap=bootstrap, data_dir=data_dir, collector_token_rate=1e9
    )
    if args.part in ("all", "simulator"):
        sim, sim_e2e, raw = await _median_runs(
            args.runs, lambda: bench_simulator(settings, args.events)
        )
        print(f"simulator: send phase {sim:,.0f} events/s (end to end with generation "
              f"{sim_e2e:,.0f}/s), raw producer same bytes: {raw:,.0f} events/s")  # fmt: skip
        print(
            f"RESULT simulator_events_per_s={sim:.0f} raw_events_per_s={raw:.0f} "
            f"ratio={sim / raw:.3f} end_to_end_events_per_s={sim_e2e:.0f}"
        )
    if args.part in ("all", "collector"):
        col, raw2 = await _median_runs(
            args.runs, lambda: bench_collector(settings, args.events, args.clients)
        )
        print(f"collector: {col:,.0f} accepted events/s, raw producer same bytes: "
              f"{raw2:,.0f} events/s")  # fmt: skip
        print(
            f"RESULT collector_events_per_s={col:.0f} raw_events_per_s={raw2:.0f} "
            f"ratio={col / raw2:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--part", choices=["all", "simulator", "collector"], default="all")
    args = parser.parse_args()
    base = Settings.from_env()
    running = local_stack.Stack.load(Path(base.data_dir))
    if running is not None and local_stack.port_open(int(running.kafka_bootstrap.split(":")[1])):
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
