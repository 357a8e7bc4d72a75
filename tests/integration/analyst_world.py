"""One real pipeline run for the analyst tests (importable helpers, not tests).

Three simulated school days (two days ago, yesterday, today; each a fresh simulator run whose clock is moved
back) go through a real worker and real sinks into chDB; the ClickHouse sink keeps running and serves its
read endpoint, and ``csync analyst-api`` runs as its own process on top of it with a catalog, an analyst
token (issued with ``csync analyst-token add``) and the audit log. The truth is the simulator's, per run (each
run's events get their own ids), and the runs' cells (distinct minutes) are merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from analyst.catalog import SAMPLE_CATALOG
from csync.settings import Settings
from csync.stack import Stack, free_port
from producers import simulator_model
from producers.simulator import SendOptions, run_simulation
from producers.simulator_model import SimulationConfig
from producers.truth import Truth, TruthParams, ground_truth
from schemas.event import ActivityEvent
from tests.integration.e2e_harness import ROOT, Pipeline, Proc, pipeline_settings, process_env, say

K = 5  # many simulated cells pass it and many do not (the view is migrated with this K)
DAY_S = 86_400
# 200 students over 4 schools: many daily cells are published and many are not; each day has its own
# seed. No invalid events: the simulator's "ts in the future" breakage is the event a day later, which is valid (and in the
# next simulated day) when the run's clock is moved back.
CONFIG = SimulationConfig(
    seed=16, districts=1, schools_per_district=4, classes_per_school=6, students_per_class=25,
    dup_rate=0.02, reorder_rate=0.03, invalid_rate=0.0,
)  # fmt: skip
OPTIONS = SendOptions(count=12_000, speed=0, rate=4000)
DAYS_BACK = (2, 1, 0)
CATALOG = SAMPLE_CATALOG.read_text()  # the catalog the project ships for the simulated district


@dataclass
class World:
    """The running pipeline and analyst service, and what the truth says."""

    settings: Settings
    pipeline: Pipeline
    api: Proc
    base_url: str
    token: str
    days: list[dt.date]
    cells: dict[tuple[str, str, str], tuple[float, int]]
    """Every daily cell ``(day, app, sub_app) -> (seconds, students)`` of the truth, suppressed ones too."""
    artifacts: Path

    def public(self) -> dict[tuple[str, str, str], tuple[float, int]]:
        return {key: v for key, v in self.cells.items() if v[1] >= K}

    def get(
        self, path: str, params: dict[str, str] | None = None, token: str | None = None
    ) -> tuple[int, bytes]:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params or {})}"
        auth = {"Authorization": f"Bearer {token or self.token}"}
        request = urllib.request.Request(url, headers=auth)  # noqa: S310 - loopback http
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str, **params: str) -> dict[str, Any]:
        status, body = self.get(path, params)
        assert status == 200, f"{path} {params}: {status} {body[:300]!r}"
        document: dict[str, Any] = json.loads(body)
        return document


def _settings(stack: Stack, root: Path) -> Settings:
    unique = uuid.uuid4().hex[:10]
    base = Settings.from_env(
        env={},
        kafka_bootstrap=stack.kafka_bootstrap,
        redis_url=stack.redis_url,
        topic_activity=f"t{unique}-device-activity.v1",
        topic_roster=f"t{unique}-roster.v1",
        topic_dlq=f"t{unique}-device-activity.dlq.v1",
        topic_presence=f"t{unique}-presence.v1",
        topic_usage_cells=f"t{unique}-usage-cells.v1",
        partitions=4,
        key_prefix=f"cs{unique}",
        clickhouse_database=f"usage_{unique}",
        data_dir=str(root / "data"),
        k_anonymity=K,
    )
    return pipeline_settings(base)


@contextlib.contextmanager
def _event_ids_of_run(tag: str) -> Any:
    """The simulator names events ``{device}-{seq}``, the same in every run; events are unique per the
    contract, so each simulated day gets its own ids (the worker would rightly drop repeats)."""
    original = simulator_model.ActivityGenerator._event

    def tagged(self: Any, device: Any, kind: str, ts: int) -> Any:
        event = original(self, device, kind, ts)
        return event._replace(event_id=f"{tag}-{event.event_id}")

    simulator_model.ActivityGenerator._event = tagged  # type: ignore[method-assign]
    try:
        yield
    finally:
        simulator_model.ActivityGenerator._event = original  # type: ignore[method-assign]


# Simulated students spread over ~50 sites rarely reach K on one; a class browsing together does. Each
# (site, students, minutes): the third stays below K, beside a published site of the same app ("web").
WEB_VISITS = (("khanacademy.org", 12, 6), ("en.wikipedia.org", 7, 4), ("coolmathgames.com", 3, 3))


def web_class(start_ms: int) -> list[ActivityEvent]:
    """Events of students browsing the sites of :data:`WEB_VISITS` (heartbeats every 10 s, then logout)."""
    events = []
    for v, (site, students, minutes) in enumerate(WEB_VISITS):
        for n in range(students):
            student, device = f"s-web{v}-{n:02d}", f"dv-web{v}-{n:02d}"
            ts = start_ms + n * 1000
            for i in range(minutes * 6):
                kind = "app_focus" if i == 0 else "heartbeat"
                events.append(
                    ActivityEvent(
                        f"{device}-{i}",
                        kind,
                        ts + i * 10_000,
                        "d-001",
                        student,
                        device,
                        "web",
                        site,
                    )
                )
            events.append(
                ActivityEvent(
                    f"{device}-end",
                    "logout",
                    ts + minutes * 60_000,
                    "d-001",
                    student,
                    device,
                    "",
                    "",
                )
            )
    return events


async def _send_web_class(pipeline: Pipeline, events: list[ActivityEvent]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.s.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for e in events:
            wire = {"v": 1, "event_id": e.event_id, "kind": e.kind, "ts": e.ts, "district_id": e.district_id,
                    "student_id": e.student_id, "device_id": e.device_id}  # fmt: skip
            if e.app:
                wire |= {"app": e.app, "url": f"https://www.{e.sub_app}/page?x=1"}
            await producer.send(
                pipeline.s.topic_activity, json.dumps(wire).encode(), key=e.student_key.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _run(pipeline: Pipeline) -> list[Truth]:
    await pipeline.create_topics()
    pipeline.start_all(workers=1)
    truths = []
    for back in DAYS_BACK:
        now = time.time()
        with _event_ids_of_run(f"r{back}"):
            report = await run_simulation(pipeline.s, dataclasses.replace(CONFIG, seed=CONFIG.seed + back), OPTIONS, clock=lambda b=back: time.time() - b * DAY_S,
                                          progress=None)  # fmt: skip
        say(
            f"analyst world: day -{back}: {len(report.acked_events)} events acked in {report.elapsed_s:.1f}s"
        )
        await pipeline.wait_complete()
        params = TruthParams.from_settings(pipeline.s)
        truths.append(ground_truth(report.acked_events, params, int((now - back * DAY_S) * 1000)))
    web = web_class(
        int((time.time() - 3 * 3600) * 1000)
    )  # three hours ago: no minute of the runs above
    await _send_web_class(pipeline, web)
    await pipeline.wait_complete()
    truths.append(ground_truth(web, TruthParams.from_settings(pipeline.s), int(time.time() * 1000)))
    return truths


def daily_cells(truths: list[Truth]) -> dict[tuple[str, str, str], tuple[float, int]]:
    """Every daily cell of the merged truths (the runs' minutes are disjoint)."""
    ms: dict[tuple[str, str, str], int] = defaultdict(int)
    students: dict[tuple[str, str, str], set[Any]] = defaultdict(set)
    seen: set[int] = set()
    for truth in truths:
        minutes = {m for m, _a, _s in truth.cells}
        assert not minutes & seen, "two simulated days share a minute"
        seen |= minutes
        for (minute, app, sub_app), cell in truth.cells.items():
            key = (time.strftime("%Y-%m-%d", time.gmtime(minute - minute % DAY_S)), app, sub_app)
            ms[key] += cell.active_ms
            students[key] |= cell.students
    return {key: (ms[key] / 1000, len(who)) for key, who in students.items()}


def start_world(stack: Stack, root: Path) -> World:
    """Run the pipeline over three days and start the analyst service; stop it with :func:`stop_world`."""
    settings = _settings(stack, root)
    pipeline = Pipeline(settings, root / "pipeline")
    started = time.monotonic()
    truths = asyncio.run(_run(pipeline))
    catalog = root / "catalog.csv"
    catalog.write_text(CATALOG)
    port = free_port()
    env = process_env(settings, clickhouse_url=f"chdb://{pipeline.chdb_path}",
                      usage_read_port=pipeline.usage_read_port, analyst_api_port=port,
                      analyst_catalog_path=catalog)  # fmt: skip
    token = subprocess.run([sys.executable, "-m", "csync.cli", "analyst-token", "add", "a-test"], env=env,
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    api = pipeline._spawn("analyst-api", [sys.executable, "-m", "csync.cli", "analyst-api"], env)
    base_url = f"http://127.0.0.1:{port}"
    _wait_healthy(api, base_url)
    cells = daily_cells(truths)
    days = sorted({dt.date.fromisoformat(d) for d, _a, _s in cells})
    artifacts = ROOT / ".local" / "test-artifacts" / "analyst"
    artifacts.mkdir(parents=True, exist_ok=True)
    say(f"analyst world ready in {time.monotonic() - started:.1f}s: days {days}, {len(cells)} daily cells, "
        f"{sum(1 for v in cells.values() if v[1] >= K)} published")  # fmt: skip
    return World(settings, pipeline, api, base_url, token, days, cells, artifacts)


def _wait_healthy(api: Proc, base_url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert api.alive(), f"analyst-api exited:\n{api.tail()}"
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2):  # noqa: S310 - loopback
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError(f"analyst-api did not answer:\n{api.tail()}")


def stop_world(world: World) -> None:
    world.api.stop()
    world.pipeline.close()
