"""Fault scenario: a worker stalls (SIGSTOP) past the group's session timeout while the simulator sends.

The other worker takes its partitions over (its recovery starts their transactional producers, which fences
the stalled one's). Then the stalled worker resumes (SIGCONT) still holding the partitions in memory, maybe a
polled batch: everything it tries to land of them — intents, usage partials, presence changes, DLQ records,
re-routed events, the snapshot of its revocation — is refused by the broker (``ProducerFenced``), and it
rejoins the group. Proven by: its log says so, every activity offset is covered by at most one committed
intent and one committed usage partial (nothing processed twice), and Redis and ClickHouse equal the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from csync.settings import Settings
from producers.simulator import SendOptions
from schemas.internal import UsagePartial
from streams.batch_log import INTENT_KEY, decode_intent
from tests.integration.e2e_harness import E2E_CONFIG, Pipeline, Proc, pipeline_settings, say, verify

pytestmark = [
    pytest.mark.faults,
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.clickhouse,
    pytest.mark.timeout(420),
]

# ~9,000 events over ~30 s: the stall (session timeout 10 s + the takeover) happens while they flow.
OPTIONS = SendOptions(count=9000, speed=0, rate=300)
CLOSE_AFTER_S = 4  # as in test_faults_worker: room for the stalls of a rebalance on two cores
RECOVERED = re.compile(r"partition (\d+) recovered")


def recovered(proc: Proc) -> list[int]:
    """The partitions ``proc`` has recovered so far, in log order."""
    with contextlib.suppress(OSError):
        return [int(p) for p in RECOVERED.findall(proc.log.read_text(errors="replace"))]
    return []


def owned(proc: Proc) -> set[int]:
    """The partitions ``proc`` owns now: a rebalance revokes all of them, and each one assigned
    then is recovered (logged)."""
    text = proc.log.read_text(errors="replace")
    return {int(p) for p in RECOVERED.findall(text.rpartition("Revoking previously assigned")[2])}


async def wait_group(pipeline: Pipeline, members: int, timeout_s: float = 120) -> float:
    async def stable() -> bool:
        state, _protocol, count = await pipeline.group_state(pipeline.s.worker_group)
        return state == "Stable" and count == members

    return await pipeline.wait_for(f"{members} workers in the group", stable, timeout_s, 0.2)


def overlaps(ranges: dict[int, list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """``(partition, offset)`` where a range starts inside the one before it (offsets covered twice)."""
    found = []
    for p, spans in ranges.items():
        ordered = sorted(spans)
        for (_first, last), (first, _last) in zip(ordered, ordered[1:], strict=False):
            if first <= last:
                found.append((p, first))
    return found


async def committed_ranges(pipeline: Pipeline) -> tuple[dict[int, list[tuple[int, int]]], ...]:
    """Activity offset ranges of the committed intents and of the committed usage partials."""
    s = pipeline.s
    intents: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for p, _o, key, value in await pipeline.read_topic(s.topic_worker_state):
        if key == INTENT_KEY and value is not None:
            i = decode_intent(value)
            if i.act_first <= i.act_last:
                intents[p].append((i.act_first, i.act_last))
    partials: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for _p, _o, _key, value in await pipeline.read_topic(s.topic_usage_cells):
        assert value is not None
        partial = UsagePartial.decode(value)
        if partial.first_offset <= partial.last_offset:
            partials[partial.partition].append((partial.first_offset, partial.last_offset))
    return intents, partials


async def test_a_stalled_worker_resumed_after_the_takeover_lands_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings(), usage_close_after_s=CLOSE_AFTER_S)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=2)
        await wait_group(pipeline, 2)
        sending = asyncio.create_task(pipeline.simulate(E2E_CONFIG, OPTIONS))
        await asyncio.sleep(5)
        zombie, other = pipeline.workers[0], pipeline.workers[1]
        lost = owned(zombie)
        assert len(lost) == settings.partitions // 2, f"the worker to stall owns {lost}"
        before = len(recovered(other))
        zombie.popen.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            await wait_group(pipeline, 1, timeout_s=60)
            left_s = time.monotonic() - stopped

            async def took_over() -> bool:
                return lost <= set(recovered(other)[before:])

            await pipeline.wait_for(
                "the other worker to recover the lost partitions", took_over, 60, 0.1
            )
            took_s = time.monotonic() - stopped
        finally:
            zombie.popen.send_signal(signal.SIGCONT)
        say(
            f"stalled worker: out of the group {left_s:.1f}s after SIGSTOP, its partitions {sorted(lost)} "
            f"recovered "
            f"by the other worker {took_s:.1f}s after SIGSTOP; resumed"
        )
        await wait_group(pipeline, 2)  # the resumed worker rejoins as a new member
        report, population = await sending
        waited = await pipeline.wait_complete()
        log = zombie.log.read_text(errors="replace")
        assert "fenced by its new owner" in log, (
            f"the resumed worker was never fenced:\n{zombie.tail()}"
        )
        intents, partials = await committed_ranges(pipeline)
        assert not overlaps(intents), (
            f"activity offsets in two committed intents: {overlaps(intents)[:5]}"
        )
        assert not overlaps(partials), (
            f"activity offsets in two usage partials: {overlaps(partials)[:5]}"
        )
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
    say(
        f"stalled worker fenced: {len(report.acked_events)} valid events, complete {waited:.1f}s after the "
        f"simulator finished, {verdict.cells} cells exact"
    )
