"""``csync dlq`` on the real stack, against the simulator's truth.

A school day of the simulator (with its invalid events) flows through a real worker and both sinks. Beside
it, three students' devices have clocks running ahead: every event they send is rejected as
``ts_in_future`` (the worker runs with ``MAX_FUTURE_S=5``). The test then checks, through the real CLI:

- ``stats`` counts by reason and ``show`` prints no id or name unless ``--unredacted`` (audited);
- ``redrive`` refuses the events still in the future; once their times have passed it sends them, and
  Redis and ClickHouse equal the truth of the simulator's events *plus* the redriven ones, exactly once,
  although ``redrive`` ran twice;
- events still invalid (``unknown_kind``) return to the DLQ once and are never re-driven again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from producers.simulator_model import Student
from schemas.decoder import encode_event
from schemas.event import ActivityEvent
from tests.integration.e2e_harness import (
    DEFAULT_OPTIONS,
    E2E_CONFIG,
    ROOT,
    Pipeline,
    pipeline_settings,
    process_env,
    say,
    verify,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]
SKEW_MS = 20_000  # the skewed devices' clocks run this far ahead (> MAX_FUTURE_S = 5 s)


def csync(settings: Settings, *args: str) -> str:
    """Run the real ``csync`` CLI with ``settings``; its stdout (fails on a non-zero exit)."""
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "csync.cli", *args],
        cwd=ROOT,
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def sent_count(output: str) -> int:
    found = re.search(r"^to send: (\d+)$", output, re.MULTILINE)
    assert found, output
    return int(found.group(1))


def skewed_students() -> list[Student]:
    return [
        Student("d-900", f"s-d900-{i:05d}", f"Skewed Clock{i}", "sch-d900-1", ("c-d900-1",),
                (f"cb-s-d900-{i:05d}",))
        for i in range(1, 4)
    ]  # fmt: skip


async def send_skewed(settings: Settings, students: list[Student]) -> list[ActivityEvent]:
    """Their roster records, then 10 events per device stamped SKEW_MS ahead of the wall clock."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    events: list[ActivityEvent] = []
    try:
        for s in students:
            roster = orjson.dumps({"name": s.name, "classes": list(s.classes)})
            key = f"{s.district_id}:{s.student_id}".encode()
            await producer.send_and_wait(settings.topic_roster, roster, key=key)
        start = int(time.time() * 1000) + SKEW_MS
        for s in students:
            key = f"{s.district_id}:{s.student_id}".encode()
            for i in range(10):
                kind = "app_focus" if i in (0, 5) else "heartbeat"
                app = "docs" if i < 5 else "slides"
                ev = ActivityEvent(f"sk-{s.student_id}-{i}", kind, start + i * 1000,
                                   s.district_id, s.student_id, s.devices[0], app, "unit-3")  # fmt: skip
                await producer.send_and_wait(settings.topic_activity, encode_event(ev), key=key)
                events.append(ev)
    finally:
        await producer.stop()
    return events


async def test_dlq_stats_show_and_exactly_once_redrive(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings(), max_future_s=5)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        skewed = skewed_students()
        skewed_events = await send_skewed(settings, skewed)
        report, population = await pipeline.simulate(E2E_CONFIG, DEFAULT_OPTIONS)
        await pipeline.wait_worker_caught_up()

        stats = csync(settings, "dlq", "stats")
        assert re.search(r"^  ts_in_future\s+(\d+)$", stats, re.MULTILINE), stats
        assert "redriven 0" in stats
        shown = csync(settings, "dlq", "show", "--reason", "ts_in_future", "--limit", "50")
        secrets = {x for s in population + skewed for x in (s.student_id, s.name, *s.devices)}
        assert "dlq " in shown and not [x for x in secrets if x in shown]
        audit = Path(settings.data_dir) / "audit" / "audit.log"
        assert not audit.exists()
        raw = csync(
            settings, "dlq", "show", "--reason", "ts_in_future", "--unredacted", "--who", "op1"
        )
        assert '"student_id":"s-d' in raw  # the bytes as sent
        entry = orjson.loads(audit.read_text().splitlines()[-1])
        assert (entry["who"], entry["action"]) == ("op1", "dlq.show.unredacted")

        # Too early: the skewed events are still in the future and are refused; nothing is sent.
        early = csync(settings, "dlq", "redrive", "--reason", "ts_in_future")
        assert sent_count(early) == 0 and "still in the future" in early
        wait_s = (max(e.ts for e in skewed_events) + 1000) / 1000 - time.time()
        await asyncio.sleep(max(0.0, wait_s))

        dry = csync(settings, "dlq", "redrive", "--reason", "ts_in_future", "--dry-run")
        assert sent_count(dry) == len(skewed_events) and "dry run" in dry
        first = csync(settings, "dlq", "redrive", "--reason", "ts_in_future", "--since", "1h")
        assert sent_count(first) == len(skewed_events), first
        # The simulator's own ts_in_future events are a day ahead: refused, not sent.
        assert "still in the future" in first
        entry = orjson.loads(audit.read_text().splitlines()[-1])
        assert (entry["action"], entry["detail"]["sent"]) == ("dlq.redrive", len(skewed_events))
        second = csync(settings, "dlq", "redrive", "--reason", "ts_in_future")
        assert sent_count(second) == 0 and "already redriven" in second, second
        say(f"dlq: redrive sent {len(skewed_events)}, the second run 0")

        # Still invalid: returns to the DLQ once, then is never selected again.
        bad = sent_count(csync(settings, "dlq", "redrive", "--reason", "unknown_kind"))
        assert bad > 0
        await pipeline.wait_worker_caught_up()
        again = csync(settings, "dlq", "redrive", "--reason", "unknown_kind")
        assert sent_count(again) == 0
        assert re.search(rf"not sent:\s+{bad}\s+returned after a redrive", again), again
        assert f"returned after a redrive {bad}" in csync(settings, "dlq", "stats")

        await pipeline.wait_complete()
        with_redriven = dataclasses.replace(
            report, acked_events=report.acked_events + skewed_events
        )
        verdict = await verify(pipeline, with_redriven, population + skewed)
    finally:
        pipeline.close()
    assert verdict.students == len(population) + len(skewed)


async def test_a_run_that_died_after_sending_is_not_sent_again(kafka_settings: Settings) -> None:
    """Intent written, one of two events sent, then the run died (no done entry): the next run finds the
    sent one by its redrive header and treats only the other as not sent."""
    from ops.dlq import REDRIVE_HEADER, intent_doc
    from ops.dlq_io import ensure_ledger_topic, ledger_topic, load_ledger, resolve_uncertain

    settings = kafka_settings
    await ensure_ledger_topic(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(ledger_topic(settings), intent_doc("dead", [(2, 7), (2, 8)]))
        await producer.send_and_wait(settings.topic_activity, b"{}", key=b"d-1:s-1", partition=3)
        meta = await producer.send_and_wait(
            settings.topic_activity, b"{}", key=b"d-1:s-1", partition=3,
            headers=[(REDRIVE_HEADER, b"2:7")],
        )  # fmt: skip
    finally:
        await producer.stop()
    ledger = await load_ledger(settings)
    assert set(ledger.uncertain) == {(2, 7), (2, 8)}
    found = await resolve_uncertain(settings, ledger)
    assert found == {(2, 7): (3, meta.offset)}
    assert ledger.sent == found and ledger.uncertain == {}
