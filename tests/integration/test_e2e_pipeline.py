"""The whole pipeline end to end against the truth.

Simulator (duplicates, reordering within lateness, invalid events, roster records with names) → a real worker
process → ``csync sink redis`` and ``csync sink clickhouse`` processes → Redis hashes and ClickHouse cells equal
the ground truth exactly; the analysts' view holds only cells of at least K students; no identifier of the
simulation is in any String column of the usage database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from csync.settings import Settings
from tests.integration.e2e_harness import (
    DEFAULT_OPTIONS,
    E2E_CONFIG,
    Pipeline,
    pipeline_settings,
    say,
    verify,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]


async def test_pipeline_end_to_end_equals_truth(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings())
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    started = time.monotonic()
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        report, population = await pipeline.simulate(E2E_CONFIG, DEFAULT_OPTIONS)
        assert report.invalid_sent > 0 and len(report.acked_events) == report.events_sent
        waited = await pipeline.wait_complete()
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
    assert verdict.public_rows > 0 and verdict.suppressed_rows > 0  # both sides of K were exercised
    assert 0 < verdict.online < verdict.students
    say(f"e2e: completion waited {waited:.1f}s, whole test {time.monotonic() - started:.1f}s")
