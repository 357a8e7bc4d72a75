"""The whole pipeline over secured connections: Kafka SASL_SSL (SCRAM-SHA-512) and Redis over TLS with a
password, both started here with a CA and server certificate this test generates.

Every client of the run (simulator, topic creation, worker, both sinks, the harness's own offset readers) gets
only the SASL_SSL listener's address and the TLS Redis URL, so a client that ignored the security settings
could not reach anything. Redis and ClickHouse must then equal the simulator's truth exactly. A wrong Kafka
password fails fast with a message naming the settings to check (and never the password); a wrong Redis
password, or a client without TLS, is refused.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from csync import stack as local_stack
from csync.kafka_client import KafkaSecurityError, check_credentials
from csync.redis_client import redis_client
from csync.settings import Settings
from csync.stack import free_port
from csync.stack_tls import Pki, make_pki, start_secure_kafka, start_tls_redis
from csync.topics import create_topics
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

KAFKA_USER = "csync-app"
KAFKA_PASSWORD = "kafka-Secret-7f3a"  # noqa: S105 - a throw-away password of this test's broker
REDIS_PASSWORD = "redis-Secret-91bc"  # noqa: S105


@dataclass
class SecureStack:
    pki: Pki
    kafka_bootstrap: str
    redis_url: str
    secrets: Path
    pids: list[int]


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    root = tmp_path_factory.mktemp("secure-stack")
    pki = make_pki(root / "pki")
    kafka, sasl_port = start_secure_kafka(root, pki, {KAFKA_USER: KAFKA_PASSWORD})
    try:
        redis_info = start_tls_redis(root, pki, REDIS_PASSWORD)
    except BaseException:
        local_stack._terminate(kafka.pid)
        raise
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "kafka-password").write_text(KAFKA_PASSWORD + "\n")
    (secrets / "redis-password").write_text(REDIS_PASSWORD + "\n")
    (secrets / "wrong-password").write_text("not-the-password\n")
    try:
        yield SecureStack(
            pki,
            f"127.0.0.1:{sasl_port}",
            f"rediss://{redis_info.address}/0",
            secrets,
            [kafka.pid, redis_info.pid],
        )
    finally:
        for pid in reversed([kafka.pid, redis_info.pid]):
            local_stack._terminate(pid)


def secure_settings(
    stack: SecureStack, unique: str, tmp_path: Path, **overrides: object
) -> Settings:
    """This test's names (as the ``make_settings`` fixture gives them) on the secured services."""
    values: dict[str, object] = {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": KAFKA_USER,
        "kafka_sasl_password_file": str(stack.secrets / "kafka-password"),
        "kafka_ssl_cafile": str(stack.pki.ca_cert),
        "redis_url": stack.redis_url,
        "redis_password_file": str(stack.secrets / "redis-password"),
        "redis_ssl_cafile": str(stack.pki.ca_cert),
        "clickhouse_url": f"chdb://{tmp_path / 'no-chdb'}",
        "topic_activity": f"t{unique}-device-activity.v1",
        "topic_roster": f"t{unique}-roster.v1",
        "topic_dlq": f"t{unique}-device-activity.dlq.v1",
        "topic_presence": f"t{unique}-presence.v1",
        "topic_usage_cells": f"t{unique}-usage-cells.v1",
        "partitions": 4,
        "key_prefix": f"cs{unique}",
        "clickhouse_database": f"usage_{unique}",
        "data_dir": str(tmp_path / "data"),
    }
    values.update(overrides)
    return Settings.from_env(env={}, **values)


async def test_pipeline_over_sasl_ssl_and_redis_tls_equals_truth(
    secure_stack: SecureStack, unique: str, tmp_path: Path
) -> None:
    settings = pipeline_settings(secure_settings(secure_stack, unique, tmp_path))
    # Nothing secret travels in the processes' environment: passwords are read from the files.
    assert KAFKA_PASSWORD not in settings.to_env().values()
    assert KAFKA_PASSWORD not in repr(settings) and REDIS_PASSWORD not in repr(settings)
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    started = time.monotonic()
    try:
        await create_topics(settings)
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        report, population = await pipeline.simulate(E2E_CONFIG, DEFAULT_OPTIONS)
        assert len(report.acked_events) == report.events_sent > 0
        await pipeline.wait_complete()
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
    assert verdict.students > 0 and verdict.cells > 0 and verdict.public_rows > 0
    logs = "".join(p.log.read_text(errors="replace") for p in pipeline.procs())
    assert KAFKA_PASSWORD not in logs and REDIS_PASSWORD not in logs
    say(f"SASL_SSL + Redis TLS e2e: {time.monotonic() - started:.1f}s, {verdict}")


async def test_wrong_kafka_password_fails_fast_with_a_clear_message(
    secure_stack: SecureStack, unique: str, tmp_path: Path
) -> None:
    wrong = secure_settings(
        secure_stack,
        unique,
        tmp_path,
        kafka_sasl_password_file=str(secure_stack.secrets / "wrong-password"),
    )
    started = time.monotonic()
    with pytest.raises(KafkaSecurityError) as caught:
        await check_credentials(wrong)
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert KAFKA_USER in message and "SCRAM-SHA-512" in message
    assert "KAFKA_SASL_PASSWORD_FILE" in message and "not-the-password" not in message

    # Processes started with the wrong password exit on their own, quickly, saying why.
    commands = [["topics", "create"], ["sink", "redis"], ["worker"], ["lag", "serve"]]
    for command in commands:
        env = process_env(
            wrong, sink_redis_metrics_port=0, lag_metrics_port=0, worker_web_port=free_port()
        )
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "csync.cli", *command],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        out = result.stdout + result.stderr
        assert result.returncode != 0, (command, out[-2000:])
        assert "rejected the SCRAM-SHA-512 login" in out, (command, out[-2000:])
        assert "not-the-password" not in out
        assert elapsed < 30, f"csync {' '.join(command)} took {elapsed:.1f}s to fail"

    # Without TLS (the plain protocol on the TLS listener) nothing is served either.
    plain = secure_settings(
        secure_stack, unique, tmp_path, kafka_security_protocol="SASL_PLAINTEXT"
    )
    with pytest.raises((KafkaSecurityError, OSError, asyncio.TimeoutError)):
        await asyncio.wait_for(create_topics(plain), 30)


async def test_redis_tls_refuses_a_wrong_password_and_plain_connections(
    secure_stack: SecureStack, unique: str, tmp_path: Path
) -> None:
    good = secure_settings(secure_stack, unique, tmp_path)
    client = redis_client(good, socket_timeout=5)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    wrong = good.replace(redis_password_file=str(secure_stack.secrets / "wrong-password"))
    client = redis_client(wrong, socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()
    plain = good.replace(redis_url=secure_stack.redis_url.replace("rediss://", "redis://"))
    client = redis_client(plain, socket_timeout=3, socket_connect_timeout=3)
    try:
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            await client.ping()
    finally:
        await client.aclose()
