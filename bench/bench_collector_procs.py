"""Collector processes behind one port (``SO_REUSEPORT``): accepted events/s of 2 processes vs 1.

One collector process is bound by its one core (HTTP parsing, authentication, validation). With
``COLLECTOR_REUSE_PORT=1`` several ``csync collector`` processes bind the same port and the kernel
spreads the devices' connections over them. This bench runs the real command (a subprocess each, as
an operator would) with 1 and then 2 processes on one port, loads it from a separate process
(``--clients`` keep-alive connections POSTing pre-built bodies of 500 events, as in
``bench_producers.py``) and times the accepted events per second from the first request to the last
answer (an answer comes only after Kafka acknowledged its events). Runs alternate 1 and 2 processes;
medians of ``--runs``. The baseline of the ratio is the single process, measured in the same run.

On a machine with fewer free cores than processes + broker + load generator the ratio shows what the
cores allow, not what the collector would do with a core each: the table states the cores.

    .venv/bin/python bench/bench_collector_procs.py [--events 100000] [--clients 16] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_producers import collector_bodies, http_load_process  # noqa: E402
from bench.bench_stack import bench_kafka  # noqa: E402
from csync import stack as local_stack  # noqa: E402
from csync.settings import Settings  # noqa: E402
from csync.topics import create_topics  # noqa: E402
from producers.collector import add_token  # noqa: E402


async def _ready(ops_ports: list[int], procs: list[subprocess.Popen[bytes]]) -> None:
    async with aiohttp.ClientSession() as http:
        for port, proc in zip(ops_ports, procs, strict=True):
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"a collector exited: {proc.stderr.read() if proc.stderr else ''!r}"
                    )
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("a collector did not become ready in 30 s")


async def one_run(base: Settings, processes: int, events: int, clients: int) -> float:
    """Accepted events/s of ``processes`` collector processes on one port."""
    topic = f"bench{uuid.uuid4().hex[:8]}-colprocs"
    settings = base.replace(topic_activity=topic)
    await create_topics(settings)
    data = Path(tempfile.mkdtemp(prefix="bench-colprocs-"))
    tokens = data / "tokens.json"
    add_token(tokens, "bench", "d-001")
    items, bodies = collector_bodies(events)
    total = len(items)
    port, ops = local_stack.free_port(), [local_stack.free_port() for _ in range(processes)]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TOPIC_ACTIVITY": topic,
        "TOPIC_DLQ": settings.topic_dlq,
        "PARTITIONS": str(settings.partitions),
        "COLLECTOR_TOKENS_FILE": str(tokens),
        "COLLECTOR_TOKEN_RATE": "1e9",
        "COLLECTOR_PORT": str(port),
        "COLLECTOR_REUSE_PORT": "1",
        "DATA_DIR": str(data),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "csync.cli", "collector"],
            env={**env, "COLLECTOR_METRICS_PORT": str(ops[n])},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(processes)
    ]
    try:
        await _ready(ops, procs)
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        load = ctx.Process(target=http_load_process, args=(port, bodies, clients, send))
        load.start()
        while not receive.poll():
            if load.exitcode is not None and not receive.poll():
                raise RuntimeError("the load generator died")
            await asyncio.sleep(0.05)
        accepted, seconds = receive.recv()
        load.join(10)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    if accepted != total:
        raise RuntimeError(f"accepted {accepted} of {total} events")
    return float(accepted / seconds)


async def _main(base: Settings, args: argparse.Namespace) -> None:
    one: list[float] = []
    two: list[float] = []
    for n in range(args.runs):
        one.append(await one_run(base, 1, args.events, args.clients))
        two.append(await one_run(base, 2, args.events, args.clients))
        print(f"run {n + 1}/{args.runs}: 1 process {one[-1]:,.0f} events/s, "
              f"2 processes {two[-1]:,.0f} events/s", flush=True)  # fmt: skip
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"collector behind one port: 1 process {m1:,.0f}/s, 2 processes {m2:,.0f}/s "
          f"({m2 / m1:.2f}×), {os.cpu_count()} cores")  # fmt: skip
    print(f"RESULT collector_2p_events_per_s={m2:.0f} collector_1p_events_per_s={m1:.0f} "
          f"ratio={m2 / m1:.3f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with bench_kafka("bench-colprocs-") as (bootstrap, tmp):
        base = Settings.from_env(env={}, kafka_bootstrap=bootstrap, data_dir=str(tmp / "data"))
        asyncio.run(_main(base, args))


if __name__ == "__main__":
    main()
