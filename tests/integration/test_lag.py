"""The lag monitor against the real broker: offset lag equals Kafka's own tool, a live consumer brings it to 0
with status OK, and a frozen consumer (SIGSTOP) shows growing time lag and turns STALL/STOP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from csync import stack as local_stack
from csync.settings import Settings
from ops.lag import Status
from ops.lag_monitor import GroupLag, LagMonitor
from ops.lag_view import format_table

# A consume-and-commit loop, standing in for any of our consumers (the faust worker is another team's).
CONSUMER_SCRIPT = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main(bootstrap, topic, group):
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
    )
    await consumer.start()
    announced = False
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=50)
            if batch:
                await consumer.commit()
            if consumer.assignment() and not announced:
                print("assigned", flush=True)
                announced = True
    finally:
        await consumer.stop()

asyncio.run(main(*sys.argv[1:4]))
"""


async def produce(settings: Settings, n: int, tag: str = "") -> Counter[int]:
    """Produce ``n`` records spread over the partitions; return how many landed on each."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic_activity, key=f"d1:s{tag}{i}".encode(), value=b"{}")
            for i in range(n)
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return Counter(m.partition for m in metas)


async def commit_zero(settings: Settings, group: str) -> None:
    """A group that committed offset 0 on every partition of the topic (and consumed nothing)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_activity, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.commit(dict.fromkeys(tps, 0))
    finally:
        await consumer.stop()


def kafka_tool_lag(bootstrap: str, group: str) -> tuple[dict[tuple[str, int], str], str]:
    """``kafka-consumer-groups --describe`` from the broker's own jars: {(topic, partition): LAG}."""
    cmd = [
        local_stack.java_binary(),
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        f"{local_stack.kafka_lib_dir()}/*",
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--group",
        group,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    lags: dict[tuple[str, int], str] = {}
    header: list[str] | None = None
    for line in out.splitlines():
        cols = line.split()
        if cols[:1] == ["GROUP"]:
            header = cols
        elif header and len(cols) == len(header) and cols[0] == group:
            row = dict(zip(header, cols, strict=True))
            lags[(row["TOPIC"], int(row["PARTITION"]))] = row["LAG"]
    return lags, out


def our_lag(report: GroupLag) -> dict[tuple[str, int], str]:
    return {(p.topic, p.partition): "-" if p.lag is None else str(p.lag) for p in report.partitions}


@pytest.mark.kafka
async def test_offset_lag_is_n_and_equals_kafkas_own_tool(
    kafka_settings: Settings, unique: str, tmp_path: Path
) -> None:
    settings = kafka_settings
    committed_zero, never, assigned_only = f"t{unique}-zero", f"t{unique}-never", f"t{unique}-live"
    await commit_zero(settings, committed_zero)
    # A live member with partitions assigned but no commit: the tool prints "-" for its lag.
    live = AIOKafkaConsumer(
        settings.topic_activity,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=assigned_only,
        enable_auto_commit=False,
    )
    await live.start()
    try:
        per_partition = await produce(settings, 120)
        await live.getmany(timeout_ms=3000)
        assert live.assignment(), "the live member got no partitions"

        async with LagMonitor(settings, [committed_zero, never, assigned_only]) as monitor:
            zero, nothing, live_report = await monitor.sample()

        assert sum(p.lag or 0 for p in zero.partitions) == 120
        assert {p.partition: p.lag for p in zero.partitions} == {
            p: per_partition.get(p, 0) for p in range(settings.partitions)
        }
        assert nothing.partitions == () and nothing.status is Status.OK
        assert live_report.partitions and all(p.lag is None for p in live_report.partitions)

        for group, report in ((committed_zero, zero), (assigned_only, live_report)):
            tool, raw = await asyncio.to_thread(kafka_tool_lag, settings.kafka_bootstrap, group)
            assert tool == our_lag(report), raw
        _, raw = await asyncio.to_thread(kafka_tool_lag, settings.kafka_bootstrap, never)
        assert "not found" in raw or "does not exist" in raw, raw
    finally:
        await live.stop()

    # `csync lag` prints the same total for the group.
    env = dict(os.environ, KAFKA_BOOTSTRAP=settings.kafka_bootstrap, DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "csync.cli",
            "lag",
            "--no-exporter",
            "--group",
            committed_zero,
            "--interval",
            "0.3",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    ).stdout
    print(out)
    row = next(line.split() for line in out.splitlines() if line.startswith(committed_zero))
    assert row[1:4] == [settings.topic_activity, str(settings.partitions), "120"], out


@pytest.fixture
def consumer_process(kafka_settings: Settings, unique: str, tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(group: str) -> subprocess.Popen[str]:
        script = tmp_path / "consumer.py"
        script.write_text(CONSUMER_SCRIPT)
        proc = subprocess.Popen(
            [
                sys.executable,
                str(script),
                kafka_settings.kafka_bootstrap,
                kafka_settings.topic_activity,
                group,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "assigned"
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


async def sample_until(
    monitor: LagMonitor, done: Any, timeout_s: float, interval_s: float
) -> list[GroupLag]:
    history: list[GroupLag] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        (report,) = await monitor.sample()
        history.append(report)
        if done(report):
            return history
        await asyncio.sleep(interval_s)
    raise AssertionError(
        "condition not reached; last samples:\n" + "\n".join(map(str, history[-5:]))
    )


@pytest.mark.kafka
async def test_live_consumer_reaches_zero_and_a_frozen_one_stalls_or_stops(
    kafka_settings: Settings, unique: str, consumer_process: Any
) -> None:
    settings = kafka_settings.replace(lag_window=4, lag_sample_interval_s=0.5, lag_min_span_s=1.5)
    group = f"t{unique}-consumer"
    await produce(settings, 300, tag="a")
    proc = consumer_process(group)
    async with LagMonitor(settings, [group]) as monitor:
        caught_up = await sample_until(
            monitor,
            lambda r: r.partitions and sum(p.lag or 0 for p in r.partitions) == 0,
            timeout_s=30,
            interval_s=0.5,
        )
        assert caught_up[-1].status is Status.OK
        print(format_table([caught_up[-1]]))

        stop_producing = asyncio.Event()

        async def keep_producing() -> None:
            i = 0
            while not stop_producing.is_set():
                await produce(settings, 8, tag=f"b{i}-")
                i += 1
                await asyncio.sleep(0.2)

        producing = asyncio.create_task(keep_producing())
        try:
            # Still consuming: status stays OK while input keeps arriving.
            running = await sample_until(monitor, lambda r: len(r.partitions) > 0, 5, 0.5)
            for _ in range(4):
                (report,) = await monitor.sample()
                running.append(report)
                await asyncio.sleep(0.5)
            assert running[-1].status is Status.OK, format_table(running[-1:])

            os.kill(proc.pid, signal.SIGSTOP)
            frozen = await sample_until(
                monitor,
                lambda r: (
                    r.status in (Status.STALL, Status.STOP)
                    and max(p.time_lag_s or 0 for p in r.partitions) > 3
                ),
                timeout_s=40,
                interval_s=0.5,
            )
        finally:
            stop_producing.set()
            await producing
    print(format_table(frozen[-1:]))
    seen = [r.status for r in frozen]
    assert frozen[-1].status in (Status.STALL, Status.STOP), seen
    time_lags = [max(p.time_lag_s or 0 for p in r.partitions) for r in frozen]
    assert time_lags[-1] > time_lags[0] + 2, time_lags
