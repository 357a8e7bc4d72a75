"""``csync worker`` with the hot path's stages timed, for the latency breakdown of
``bench_presence_latency.py``.

Wraps, in this process only, the calls one poll goes through and observes each call's duration in the
histogram ``csync_bench_worker_stage_seconds{stage}`` on the worker's ``/metrics``:

- ``poll``: the consumer's ``getmany`` (waiting for records included: up to ``WORKER_BATCH_MS``);
- ``process``: the rules over one partition's records (``BatchRunner.batch``, CPU only);
- ``intent_ack``: appending a poll's intents to the batch log until Kafka acknowledges them;
- ``emit_ack``: producing a poll's outputs until Kafka acknowledges them;
- ``snapshot``: the snapshot check after each partition's batch (a write when one is due);
- ``handle``: the whole of one poll's processing (everything above but ``poll``).

The worker's code is not changed: the stages are the methods it already calls.

    python bench/worker_timed.py [--loglevel warn]
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import Histogram

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGE_SECONDS = Histogram(
    "csync_bench_worker_stage_seconds",
    "Duration of one call of a worker stage (benchmark build)",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
             0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)  # fmt: skip


def timed_async(owner: type, name: str, stage: str) -> None:
    original: Callable[..., Awaitable[Any]] = getattr(owner, name)
    histogram = STAGE_SECONDS.labels(stage)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    setattr(owner, name, wrapper)


def timed_sync(owner: type, name: str, stage: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    histogram = STAGE_SECONDS.labels(stage)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    setattr(owner, name, wrapper)


def install() -> None:
    from aiokafka import AIOKafkaConsumer

    from streams.engine import Engine
    from streams.kafka_io import KafkaBatchLog, KafkaOutputs
    from streams.ordering import BatchRunner

    timed_async(AIOKafkaConsumer, "getmany", "poll")
    timed_sync(BatchRunner, "batch", "process")
    timed_async(KafkaBatchLog, "append_intents", "intent_ack")
    timed_async(KafkaOutputs, "send", "emit_ack")
    timed_async(BatchRunner, "maybe_snapshot", "snapshot")
    timed_async(Engine, "_handle", "handle")


def main() -> None:
    install()
    from streams.app import app

    loglevel = sys.argv[sys.argv.index("--loglevel") + 1] if "--loglevel" in sys.argv else "warn"
    sys.argv = ["csync-worker", "worker", "--loglevel", loglevel]
    app.main()


if __name__ == "__main__":
    main()
