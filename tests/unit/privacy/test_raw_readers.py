"""Raw input (``device-activity.v1``) is disposed of by retention, which is only enough if no reader keeps it.

This registry lists every module that reads the raw topic and how what it keeps is purged. A new module that
consumes the raw topic fails this test until it is reviewed and added here (with its purge mechanism).
"""

from __future__ import annotations

import ast

from csync.settings import PROJECT_ROOT

PACKAGES = ("csync", "schemas", "producers", "streams", "sinks", "ops", "privacy", "analyst")
READ_CALLS = {"subscribe", "assign", "seek", "getmany", "TopicPartition", "_range", "scan_records",
              "latest_by_key", "AIOKafkaConsumer", "read_range", "read_tail"}  # fmt: skip
REVIEWED_READERS = {
    # The stream worker: its state (presence, per-device usage) is purged by roster tombstones and snapshot
    # cleanup (privacy.purge, privacy.worker_forget); raw records are re-read only for crash replay.
    "streams/engine.py",
    # The worker's Kafka adapters: crash replay re-reads the logged offset ranges of raw records into the same
    # in-memory state as above (purged the same way); nothing of them is written anywhere else.
    "streams/kafka_io.py",
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
    """True when ``source`` reads from Kafka and names the raw topic: passed to a read call directly, or
    anywhere in a module that reads (the topic may travel through a variable to the call)."""
    tree = ast.parse(source)
    reads = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) in READ_CALLS]
    if reads and _assigned_raw_topic(tree):
        return True
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in READ_CALLS and any(_mentions_raw_topic(a) for a in [*node.args, *node.keywords]):
            return True
    return False


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


# Calls that name the raw topic without reading its records: reading its configuration, producing to it.
NOT_READS = {"topic_configs", "describe_configs", "send", "send_and_wait"}


def _names_raw_topic(node: ast.AST) -> bool:
    """``node`` names the raw topic outside calls that do not read its records."""
    if isinstance(node, ast.Call) and _call_name(node) in NOT_READS:
        return False
    if (isinstance(node, ast.Attribute) and node.attr == "topic_activity") or (
        isinstance(node, ast.Constant) and node.value == "device-activity.v1"
    ):
        return True
    return any(_names_raw_topic(child) for child in ast.iter_child_nodes(node))


def _assigned_raw_topic(tree: ast.AST) -> bool:
    """The raw topic is stored in a name or attribute (``topic = s.topic_activity if … else …``), from
    where it may reach a read call."""
    return any(
        isinstance(n, ast.Assign | ast.AnnAssign)
        and n.value is not None
        and _names_raw_topic(n.value)
        for n in ast.walk(tree)
    )


def test_detector_finds_a_reader_and_ignores_a_producer() -> None:
    assert raw_readers_in("c.subscribe([s.topic_activity])")
    assert raw_readers_in("TopicPartition(settings.topic_activity, 0)")
    assert not raw_readers_in("await producer.send(settings.topic_activity, b'x')")
    # The topic reaches the read through a variable.
    assert raw_readers_in(
        "topic = s.topic_activity\nread_range(reader, TopicPartition(topic, 0), 0, 9)"
    )
    assert not raw_readers_in(
        "scan_records(r, s.topic_dlq)\nawait topic_configs(b, [s.topic_activity])"
    )


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
