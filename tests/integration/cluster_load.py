"""Load for the replication tests (importable helpers, not tests): the simulator and the HTTP collector
sending at the same time into a 3-node Kafka cluster, and what each of them had acknowledged.

The collector runs in the test process (the real :class:`producers.collector.Collector` behind its aiohttp
app), posting heartbeats of the simulated students from devices of their own, like a device: a ``503`` is
retried with the same batch after ``Retry-After``; only events it answered ``accepted`` join the truth. The
simulator's truth is what Kafka acknowledged to it. Retries of both producers are read from
``csync_producer_retries_total`` of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY

from csync.kafka_client import kafka_options
from csync.settings import Settings
from producers.collector import Collector, make_app, make_producer
from producers.collector_tokens import add_token, load_tokens
from producers.simulator import SendOptions, SendReport
from producers.simulator_model import Student, build_population
from schemas.decoder import decode_record
from schemas.event import ActivityEvent
from tests.integration.e2e_harness import E2E_CONFIG, Pipeline

TOKEN = "cluster-load-token"  # noqa: S105 - a test token of a test district
SIM_OPTIONS = SendOptions(count=9000, speed=0, rate=200)  # ~45 s of sending


def producer_retries() -> float:
    return REGISTRY.get_sample_value("csync_producer_retries_total") or 0.0


@dataclass
class CollectorLoad:
    """Devices posting to the in-process collector until stopped; what it accepted and when."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    unavailable: int = 0  # 503 answers (retried)
    accepted_at: list[float] = field(default_factory=list)  # monotonic time of each 200
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def first_accept_after(self, moment: float) -> float | None:
        later = [t for t in self.accepted_at if t > moment]
        return later[0] - moment if later else None

    async def run(self, settings: Settings, tokens: Path, students: list[Student]) -> None:
        producer = make_producer(settings)
        await producer.start()
        try:
            collector = Collector(settings, load_tokens(tokens), producer)
            await collector.start()
            async with TestClient(TestServer(make_app(collector))) as http:
                n = 0
                while not self.stop.is_set():
                    batch = [_heartbeat(students[(n + i) % len(students)], n + i) for i in range(8)]
                    n += len(batch)
                    await self._post_until_accepted(http, batch)
                    await asyncio.sleep(0.2)
        finally:
            await producer.stop()

    async def _post_until_accepted(self, http: TestClient, batch: list[dict[str, Any]]) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while True:
            self.posts += 1
            resp = await http.post("/v1/events", data=orjson.dumps(batch), headers=headers)
            body = await resp.json()
            if resp.status == 200:
                assert body["accepted"] == len(batch), body
                self.accepted += batch
                self.accepted_at.append(time.monotonic())
                return
            assert resp.status == 503, (resp.status, body)
            self.unavailable += 1
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))

    def events(self) -> list[ActivityEvent]:
        """The accepted events as the worker decodes them (the truth's input)."""
        now = int(time.time() * 1000)
        out = []
        for raw in self.accepted:
            (outcome,) = decode_record(orjson.dumps(raw), now)
            assert outcome.event is not None
            out.append(outcome.event)
        return out


def _heartbeat(student: Student, n: int) -> dict[str, Any]:
    return {
        "v": 1, "event_id": f"coll-{n}", "kind": "heartbeat", "ts": int(time.time() * 1000),
        "district_id": student.district_id, "student_id": student.student_id,
        "device_id": f"coll-{student.student_id}", "app": "docs",
    }  # fmt: skip


class Load:
    """The simulator and the collector sending into ``pipeline`` at once."""

    def __init__(self, pipeline: Pipeline, tmp_path: Path) -> None:
        self.pipeline = pipeline
        self.students = build_population(E2E_CONFIG)
        tokens = tmp_path / "collector-tokens.json"
        add_token(tokens, TOKEN, self.students[0].district_id)
        self.collector = CollectorLoad()
        self.retries_before = producer_retries()
        self._sim = asyncio.create_task(pipeline.simulate(E2E_CONFIG, SIM_OPTIONS))
        self._coll = asyncio.create_task(self.collector.run(pipeline.s, tokens, self.students))

    def sending(self) -> bool:
        return not self._sim.done()

    async def finish(self) -> tuple[SendReport, list[Student]]:
        """Wait for the simulator, stop the collector; the report holds both producers' acked events."""
        report, population = await self._sim
        self.collector.stop.set()
        await self._coll
        report.acked_events += self.collector.events()
        return report, population

    def retries(self) -> int:
        return int(producer_retries() - self.retries_before)

    async def cancel(self) -> None:
        self.collector.stop.set()
        for task in (self._sim, self._coll):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def partition_leaders(settings: Settings, topic: str) -> dict[int, tuple[int, list[int]]]:
    """``{partition: (leader node, in-sync replicas)}`` of ``topic`` now (asked again while the admin
    client reaches a node that just died)."""
    for _attempt in range(20):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000,
            **kafka_options(settings),
        )  # fmt: skip
        try:
            await admin.start()
            (described,) = await admin.describe_topics([topic])
        except KafkaError:
            await asyncio.sleep(0.5)
            continue
        finally:
            await admin.close()
        return {p["partition"]: (p["leader"], list(p["isr"])) for p in described["partitions"]}
    raise AssertionError(f"could not describe {topic}")


async def all_in_sync(settings: Settings, topics: list[str], replicas: int = 3) -> bool:
    """Every partition of ``topics`` has ``replicas`` in-sync replicas."""
    for topic in topics:
        leaders = await partition_leaders(settings, topic)
        if any(len(isr) < replicas for _leader, isr in leaders.values()):
            return False
    return True
