"""Helpers of the teacher page's browser test: its settings, the ``csync teacher-api`` process, a cuttable
TCP hop (a network drop), and producing one record."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from csync import stack as local_stack
from csync.settings import Settings
from tests.integration.e2e_harness import ROOT, Pipeline, pipeline_settings, process_env


@dataclass
class ApiProc:
    """A ``csync teacher-api`` process and how to start it again on the same port."""

    env: dict[str, str]
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "csync.cli", "teacher-api"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not local_stack.port_open(self.port):
            assert self.popen.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "teacher API did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def page_settings(local: local_stack.Stack, root: Path) -> Settings:
    unique = uuid.uuid4().hex[:10]
    base = Settings.from_env(
        env={},
        kafka_bootstrap=local.kafka_bootstrap,
        redis_url=local.redis_url,
        clickhouse_url=f"chdb://{root / 'no-chdb'}",
        topic_activity=f"t{unique}-device-activity.v1",
        topic_roster=f"t{unique}-roster.v1",
        topic_dlq=f"t{unique}-device-activity.dlq.v1",
        topic_presence=f"t{unique}-presence.v1",
        topic_usage_cells=f"t{unique}-usage-cells.v1",
        partitions=4,
        key_prefix=f"cs{unique}",
        clickhouse_database=f"usage_{unique}",
        data_dir=str(root / "data"),
    )
    return pipeline_settings(base)


async def redis_sink_caught_up(pipeline: Pipeline) -> bool:
    s = pipeline.s
    return await pipeline.group_behind(s.sink_group_redis, s.topic_presence) == 0


async def produce(settings: Settings, topic: str, key: str, value: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()


def teacher_api(settings: Settings, root: Path, name: str, **extra: Any) -> ApiProc:
    port = local_stack.free_port()
    env = process_env(settings, teacher_api_port=port, **extra)
    return ApiProc(env, port, root / f"{name}.log")


class Link:
    """A TCP hop between the browser and the API that the test can cut (every connection closed, new ones
    refused) and restore: a network drop, as a Wi-Fi hiccup does it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = local_stack.free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
                self.writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
