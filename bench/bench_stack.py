"""The Kafka broker a benchmark script runs against.

Under ``make bench`` (``bench/run_all.py``) every script gets the runner's stack in ``KAFKA_BOOTSTRAP``; a
script started alone starts a throw-away broker (and redis-server) of its own on free ports and stops it
at the end.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from csync import stack as local_stack


@contextlib.contextmanager
def bench_kafka(prefix: str) -> Iterator[tuple[str, Path]]:
    """``(bootstrap, scratch folder)``: the runner's broker if there is one, else one of this run."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap, tmp
        return
    started = local_stack.up(
        tmp / "stack", kafka_port=local_stack.free_port(),
        redis_port=local_stack.free_port(), persist_redis=False,
    )  # fmt: skip
    try:
        yield started.kafka_bootstrap, tmp
    finally:
        local_stack.down(tmp / "stack")
