"""Provisioning is a step, not a race: ``csync topics create`` and ``csync clickhouse migrate`` run
before the processes; a worker or sink whose topics are missing or differ, or whose database is not
migrated, stops at once with one line naming the command to run, and creates or alters nothing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from csync.settings import Settings
from csync.stack import free_port
from csync.topics import check_topics, worker_topic_specs
from tests.integration.e2e_harness import ROOT, process_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def run_csync(settings: Settings, *args: str, **extra: object) -> subprocess.CompletedProcess[str]:
    """One ``csync`` command with exactly ``settings``; it must end by itself within a minute."""
    return subprocess.run(
        [sys.executable, "-m", "csync.cli", *args],
        cwd=ROOT,
        env=process_env(settings, **extra),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def topics_of(settings: Settings) -> set[str]:
    """The test's topics that exist on the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = {t.name for t in worker_topic_specs(settings)}
        return names & set(await admin.list_topics())
    finally:
        await admin.close()


def said(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The one line that names ``command`` (asserts the process failed and printed it)."""
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-2000:]
    lines = [line for line in out.splitlines() if command in line]
    assert lines, out[-3000:]
    return lines[0]


async def test_a_worker_without_topics_stops_with_the_command_and_creates_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    result = run_csync(s, "worker", worker_web_port=free_port())
    line = said(result, "csync topics create")
    assert f"missing {s.topic_activity}" in line and f"missing {s.topic_worker_state}" in line
    assert await topics_of(s) == set()


async def test_topics_create_provisions_every_topic_the_worker_checks(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    result = run_csync(s, "topics", "create")
    assert result.returncode == 0, result.stderr[-2000:]
    assert await topics_of(s) == {t.name for t in worker_topic_specs(s)}
    await check_topics(s, worker_topic_specs(s))  # raises if anything differs


async def test_a_topic_with_another_partition_count_or_policy_stops_worker_and_sink(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(partitions=4)
    wrong = {s.topic_roster: (3, "compact"), s.topic_presence: (4, "delete")}
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, n, 1, topic_configs={"cleanup.policy": policy})
             for name, (n, policy) in wrong.items()]
        )  # fmt: skip
    finally:
        await admin.close()
    assert run_csync(s, "topics", "create").returncode == 1  # reports what differs, keeps it
    line = said(run_csync(s, "worker", worker_web_port=free_port()), "csync topics create")
    assert f"{s.topic_roster} differs (partitions 3 != 4)" in line
    line = said(
        run_csync(s, "sink", "redis", sink_redis_metrics_port=free_port()), "csync topics create"
    )
    assert f"{s.topic_presence} differs (cleanup.policy=delete (want compact,delete))" in line


@pytest.mark.clickhouse
async def test_a_clickhouse_sink_on_an_unmigrated_database_stops_with_the_command(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings()
    assert run_csync(s, "topics", "create").returncode == 0
    chdb = f"chdb://{tmp_path / 'chdb'}"
    ports = {"sink_clickhouse_metrics_port": free_port(), "usage_read_port": free_port()}
    result = run_csync(s, "sink", "clickhouse", clickhouse_url=chdb, **ports)
    assert f"{s.clickhouse_database} lacks migrations" in said(result, "csync clickhouse migrate")
    assert run_csync(s, "clickhouse", "migrate", clickhouse_url=chdb).returncode == 0
