"""Raw input (``device-activity.v1``) is disposed of by retention, which is only enough if no reader keeps it.

This registry lists every module that reads the raw topic and how what it keeps is purged. A new module that
consumes the raw topic fails this test until it is reviewed and added here (with its purge mechanism).
"""

from __future__ import annotations

import ast

from csync.settings import PROJECT_ROOT

PACKAGES = ("csync", "schemas", "producers", "streams", "sinks", "ops", "privacy")
READ_CALLS = {"subscribe", "assign", "seek", "getmany", "TopicPartition", "_range", "scan_records",
              "latest_by_key", "AIOKafkaConsumer"}  # fmt: skip
REVIEWED_READERS = {
    # The stream worker: its state (presence, per-device usage) is purged by roster tombstones and snapshot
    # cleanup (privacy.purge, privacy.worker_forget); raw records are re-read only for crash replay.
    "streams/engine.py",
    # csync dlq redrive: after an interrupted run, reads only the ``redrive`` header of raw records to find
    # which DLQ records were sent; keeps their (partition, offset) for the ledger, nothing of the events.
    "ops/dlq_io.py",
    # csync usage rebuild: replays closed days' raw records through the usage rule in memory and writes only
    # de-identified rows (fresh per-day token keys, never stored); keeps nothing else.
    "ops/rebuild_run.py",
}


def _mentions_raw_topic(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Attribute) and n.attr == "topic_activity")
        or (isinstance(n, ast.Constant) and n.value == "device-activity.v1")
        for n in ast.walk(node)
    )


def raw_readers_in(source: str) -> bool:
    """True when ``source`` passes the raw topic to a call that reads from Kafka."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in READ_CALLS and any(_mentions_raw_topic(a) for a in [*node.args, *node.keywords]):
            return True
    return False


def test_detector_finds_a_reader_and_ignores_a_producer() -> None:
    assert raw_readers_in("c.subscribe([s.topic_activity])")
    assert raw_readers_in("TopicPartition(settings.topic_activity, 0)")
    assert not raw_readers_in("await producer.send(settings.topic_activity, b'x')")


def test_every_module_reading_raw_input_is_reviewed() -> None:
    found = set()
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if raw_readers_in(path.read_text(encoding="utf-8")):
                found.add(str(path.relative_to(PROJECT_ROOT)))
    assert found == REVIEWED_READERS, (
        "a module reads raw device activity: review what it keeps, make csync purge cover it, "
        "then add it to REVIEWED_READERS"
    )
