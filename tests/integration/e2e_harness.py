"""End-to-end harness (importable helpers, not tests): simulator → worker processes → sink processes.

A :class:`Pipeline` runs the real processes of ClassroomSync as subprocesses with the settings of one test
(its own topics, consumer groups, Redis key prefix, ClickHouse database and one chDB path per ClickHouse sink
under the test's tmp folder):

- workers: ``csync worker``, as production starts them (each with its own ``WORKER_WEB_PORT``);
- sinks: ``python -m csync.cli sink redis`` and ``python -m csync.cli sink clickhouse`` (= ``csync sink …``).

The simulator runs in the test process and reports what Kafka acknowledged; the ground truth is computed from
exactly those events (:mod:`producers.truth`). Completion is detected from offsets, never from fixed sleeps:
the worker group's committed offsets reach the activity topic's end, the usage-cells topic stays quiet for
``USAGE_CLOSE_AFTER_S`` plus a margin (the worker finalises a device's last interval after that much arrival
silence), then each sink's group has committed its input topic's end.

chDB allows one data path per process, and the sink process owns its path while it runs: the harness stops
the ClickHouse sink cleanly (SIGTERM: last flush and commit) and reads the path from a short-lived Python
subprocess, so the test process never claims a chDB path of its own (other tests of the session use theirs).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from csync.kafka_client import consumer_options, kafka_options
from csync.redis_client import sync_redis_client
from csync.settings import Settings
from csync.stack import free_port
from csync.topics import create_topics, worker_topic_specs
from producers.simulator import SendOptions, SendReport, run_simulation
from producers.simulator_model import SimulationConfig, Student, build_population
from producers.truth import Truth, TruthParams, ground_truth
from schemas.clock import DAY_S
from schemas.internal import UsagePartial
from streams.worker import worker_command

ROOT = Path(__file__).resolve().parents[2]

# The simulated population of most scenarios: 1 district, 2 schools, 66 students, ~80 devices; with K = 10
# the analysts' view keeps some daily cells and suppresses others, so both sides of the rule are checked.
E2E_CONFIG = SimulationConfig(
    seed=5, districts=1, schools_per_district=2, classes_per_school=4, students_per_class=25,
    dup_rate=0.03, reorder_rate=0.05, invalid_rate=0.01,
)  # fmt: skip


def say(message: str) -> None:
    """A measurement or progress line (shown with ``pytest -s``; kept in the captured output otherwise)."""
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


def pipeline_settings(base: Settings, **overrides: Any) -> Settings:
    """Settings of one end-to-end run: ``base`` (the test's own names) plus the worker's internal topics,
    the consumer groups, and small timers so the run finishes quickly."""
    unique = base.key_prefix
    values: dict[str, Any] = {
        "topic_worker_state": f"t{unique}-worker-state.v1",
        "topic_day_keys": f"t{unique}-day-keys.v1",
        "worker_group": f"{unique}-worker",
        "sink_group_clickhouse": f"{unique}-sink-clickhouse",
        "sink_group_redis": f"{unique}-sink-redis",
        "usage_close_after_s": 2,
        "worker_snapshot_s": 1,
        # Long enough that nobody times out during a run (online students are compared with app/sub_app);
        # idle/logout still make students offline at once.
        "presence_timeout_s": 600,
        "presence_ts_refresh_s": 1,
        "sink_flush_interval_s": 0.5,
    }
    values.update(overrides)
    return base.replace(**values)


def variant(base: Settings, tag: str) -> Settings:
    """``base`` with its own topics, key prefix, database and groups: a second pipeline in one test."""
    topics = {f.name: f"{tag}-{getattr(base, f.name)}" for f in dataclasses.fields(base)
              if f.name.startswith("topic_")}  # fmt: skip
    return base.replace(
        **topics,
        key_prefix=f"{base.key_prefix}{tag}",
        clickhouse_database=f"{base.clickhouse_database}_{tag}",
        worker_group=f"{tag}-{base.worker_group}",
        sink_group_clickhouse=f"{tag}-{base.sink_group_clickhouse}",
        sink_group_redis=f"{tag}-{base.sink_group_redis}",
    )


def process_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment that gives a csync process exactly ``settings`` (plus ``extra`` variables)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CSYNC_TEST_STACK",)}
    env.update(settings.to_env())
    env.update({k.upper(): str(v) for k, v in extra.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """One started process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """``kill -9``: no flush, no commit, no snapshot."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            return -9

    def status(self, field_name: str) -> int:
        """A ``kB`` value of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM`` = peak RSS), 0 if gone."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
        return 0

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class ProcessDied(AssertionError):
    """A process of the pipeline exited while it should have been running."""


class Pipeline:
    """The processes of one end-to-end run and the ways to watch and read them."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.s = settings
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.chdb_path = root / "chdb-clickhouse-sink"
        self.workers: dict[int, Proc] = {}
        self.redis_sink: Proc | None = None
        self.clickhouse_sink: Proc | None = None
        self.usage_read_port = 0  # read endpoint of the running ClickHouse sink
        self._starts = 0
        self.expected_dead: set[int] = set()
        self._migrated = False
        self.last_seen: dict[tuple[str, str], tuple[dict[int, int], dict[int, int]]] = {}

    # --- processes

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        self._starts += 1
        log = self.root / f"{name}-{self._starts}.log"
        popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return Proc(name, popen, log)

    async def create_topics(self) -> None:
        await create_topics(self.s, worker_topic_specs(self.s))

    async def provision(self) -> None:
        """What an operator runs before the processes: ``csync topics create`` and ``csync
        clickhouse migrate`` (workers and sinks never create or alter anything themselves)."""
        await self.create_topics()
        await asyncio.to_thread(self.migrate_clickhouse)

    def migrate_clickhouse(self) -> None:
        """``csync clickhouse migrate`` on this run's chDB path (once; the sink is not running)."""
        if self._migrated:
            return
        env = process_env(self.s, clickhouse_url=f"chdb://{self.chdb_path}")
        result = subprocess.run(
            [sys.executable, "-m", "csync.cli", "clickhouse", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"clickhouse migrate failed:\n{result.stderr[-3000:]}"
        self._migrated = True

    def start_worker(self, index: int = 0) -> Proc:
        env = process_env(self.s, worker_web_port=free_port())
        proc = self._spawn(f"worker{index}", worker_command(), env)
        self.workers[index] = proc
        return proc

    def start_redis_sink(self, faults: str = "", **extra: Any) -> Proc:
        env = process_env(
            self.s, sink_redis_metrics_port=free_port(), sink_fault_injection=faults, **extra
        )
        self.redis_sink = self._spawn(
            "sink-redis", [sys.executable, "-m", "csync.cli", "sink", "redis"], env
        )
        return self.redis_sink

    def start_clickhouse_sink(self, faults: str = "", **extra: Any) -> Proc:
        self.migrate_clickhouse()  # the provisioning step the sink checks for
        self.usage_read_port = free_port()
        env = process_env(
            self.s,
            clickhouse_url=f"chdb://{self.chdb_path}",
            sink_clickhouse_metrics_port=free_port(),
            usage_read_port=self.usage_read_port,
            sink_fault_injection=faults,
            **extra,
        )
        self.clickhouse_sink = self._spawn(
            "sink-clickhouse", [sys.executable, "-m", "csync.cli", "sink", "clickhouse"], env
        )
        return self.clickhouse_sink

    def start_all(self, workers: int = 1) -> None:
        for i in range(workers):
            self.start_worker(i)
        self.start_redis_sink()
        self.start_clickhouse_sink()

    def procs(self) -> list[Proc]:
        found = list(self.workers.values())
        found += [p for p in (self.redis_sink, self.clickhouse_sink) if p is not None]
        return found

    def check_alive(self) -> None:
        """Fail at once, with the log, if a process that should run has exited."""
        for proc in self.procs():
            if not proc.alive() and proc.pid not in self.expected_dead:
                raise ProcessDied(
                    f"{proc.name} (pid {proc.pid}) exited with {proc.popen.returncode}:\n{proc.tail()}"
                )

    def close(self) -> None:
        """Kill whatever still runs (the end of a test, pass or fail)."""
        for proc in self.procs():
            if proc.alive():
                proc.kill9()

    # --- the simulator

    async def simulate(
        self, config: SimulationConfig, options: SendOptions
    ) -> tuple[SendReport, list[Student]]:
        report = await run_simulation(self.s, config, options, progress=None)
        say(
            f"simulator: {report.events_sent} valid + {report.invalid_sent} invalid events in "
            f"{report.records_sent} records, {report.roster_records} roster records, "
            f"{len(report.acked_events)} acked, {report.elapsed_s:.1f}s"
        )
        return report, build_population(config)

    # --- watching progress (offsets)

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.s.kafka_bootstrap, **kafka_options(self.s)
        )
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:
            return {}  # the group has not been created yet: nothing committed
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}

    async def group_state(self, group: str) -> tuple[str, str, int]:
        """``(state, assignor, members)`` of a consumer group ("Dead" and 0 members before any)."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.s.kafka_bootstrap, **kafka_options(self.s)
        )
        await admin.start()
        try:
            response = (await admin.describe_consumer_groups([group]))[0]
        except GroupCoordinatorNotAvailableError:
            return "Dead", "", 0  # the group has not been created yet
        finally:
            await admin.close()
        _error, _group, state, _type, protocol, members = response.groups[0][:6]
        return str(state), str(protocol), len(members)

    async def end_offsets(self, topic: str, partitions: int | None = None) -> dict[int, int]:
        """End offset of every partition of ``topic`` (``PARTITIONS`` of them unless told)."""
        count = self.s.partitions if partitions is None else partitions
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.kafka_bootstrap, **kafka_options(self.s)
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(count)]
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        assert len(ends) == count
        return {tp.partition: off for tp, off in ends.items()}

    async def group_behind(self, group: str, topic: str) -> int:
        """Records of ``topic`` that ``group`` has not committed yet."""
        ends = await self.end_offsets(topic)
        done = await self.committed(group, topic)
        self.last_seen[(group, topic)] = (ends, done)
        return sum(max(0, end - done.get(p, 0)) for p, end in ends.items())

    async def wait_for(
        self,
        what: str,
        condition: Callable[[], Awaitable[bool]],
        timeout_s: float,
        poll_s: float = 0.5,
    ) -> float:
        """Poll ``condition`` until it holds; the seconds it took. Fails on timeout or a dead process."""
        started = time.monotonic()
        while True:
            self.check_alive()
            if await condition():
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                seen = "; ".join(f"{g}/{t}: end {e} committed {c}" for (g, t), (e, c) in
                                 self.last_seen.items())  # fmt: skip
                raise AssertionError(
                    f"timed out after {timeout_s:.0f}s waiting for {what} ({seen})"
                )
            await asyncio.sleep(poll_s)

    async def wait_worker_caught_up(self, timeout_s: float = 180) -> float:
        """The worker group committed the end of every activity partition (committed after snapshots)."""

        async def done() -> bool:
            return await self.group_behind(self.s.worker_group, self.s.topic_activity) == 0

        return await self.wait_for("the workers to commit the activity topic", done, timeout_s)

    async def wait_usage_quiet(self, timeout_s: float = 120) -> float:
        """No new usage partial for ``USAGE_CLOSE_AFTER_S`` + 4 s while the workers are caught up: every
        device's last interval has been finalised."""
        quiet_s = self.s.usage_close_after_s + 4
        last_total = -1
        since = time.monotonic()

        async def done() -> bool:
            nonlocal last_total, since
            total = sum((await self.end_offsets(self.s.topic_usage_cells)).values())
            behind = await self.group_behind(self.s.worker_group, self.s.topic_activity)
            if total != last_total or behind:
                last_total, since = total, time.monotonic()
                return False
            return time.monotonic() - since >= quiet_s

        return await self.wait_for("the usage-cells topic to go quiet", done, timeout_s)

    async def wait_sinks_caught_up(self, timeout_s: float = 180) -> float:
        """Each sink's group committed the end of its input topic (presence, usage cells)."""

        async def done() -> bool:
            behind = await self.group_behind(self.s.sink_group_redis, self.s.topic_presence)
            behind += await self.group_behind(
                self.s.sink_group_clickhouse, self.s.topic_usage_cells
            )
            return behind == 0

        return await self.wait_for("the sinks to commit their input", done, timeout_s)

    async def wait_complete(self, timeout_s: float = 240) -> float:
        """Workers caught up, last intervals closed, sinks caught up; the total seconds."""
        started = time.monotonic()
        await self.wait_worker_caught_up(timeout_s)
        await self.wait_usage_quiet(timeout_s)
        await self.wait_sinks_caught_up(timeout_s)
        return time.monotonic() - started

    # --- reading the final state

    def stop_clickhouse_sink(self) -> int:
        """SIGTERM (last flush + commit) and wait; the exit status (0 expected)."""
        assert self.clickhouse_sink is not None
        code = self.clickhouse_sink.stop(timeout_s=60)
        self.expected_dead.add(self.clickhouse_sink.pid)
        return code

    def read_clickhouse(self) -> ClickHouseState:
        """Cells, the public view and every String value of the database, from the sink's chDB path."""
        db = self.s.clickhouse_database
        queries = {
            "cells": f"SELECT toUnixTimestamp(minute), app, sub_app, sum(active_ms), "
            f"uniqMerge(students) FROM {db}.app_minute GROUP BY minute, app, sub_app",
            "public": f"SELECT toString(day), app, sub_app, active_seconds, students "
            f"FROM {db}.app_daily_public",
        }
        out = _chdb_read(self.chdb_path, db, queries)
        cells = {(int(m), a, s): (int(ms), int(n)) for m, a, s, ms, n in out["cells"]}
        public = {(d, a, s): (float(sec), int(n)) for d, a, s, sec, n in out["public"]}
        return ClickHouseState(cells, public, out["strings"])

    async def read_topic(
        self, topic: str, partitions: int | None = None
    ) -> list[tuple[int, int, bytes | None, bytes | None]]:
        """Every record of ``topic`` now: ``(partition, offset, key, value)``."""
        return [(p, o, k, v) for p, o, k, v, _h in await self._read(topic, partitions)]

    async def read_topic_with_headers(
        self, topic: str
    ) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        """Every record of ``topic`` now: ``(key, value, headers)``."""
        return [(k, v or b"", h) for _p, _o, k, v, h in await self._read(topic, None)]

    async def _read(
        self, topic: str, partitions: int | None
    ) -> list[tuple[int, int, bytes | None, bytes | None, dict[str, bytes]]]:
        ends = await self.end_offsets(topic, partitions)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.kafka_bootstrap,
            **consumer_options(self.s),  # what the sinks see: committed transactions only
            enable_auto_commit=False,
            max_partition_fetch_bytes=64 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        await consumer.start()
        out: list[tuple[int, int, bytes | None, bytes | None, dict[str, bytes]]] = []
        try:
            tps = [TopicPartition(topic, p) for p in ends]
            consumer.assign(tps)
            for tp, first in (await consumer.beginning_offsets(tps)).items():
                consumer.seek(tp, first)
            deadline = time.monotonic() + 120
            while any([await consumer.position(tp) < ends[tp.partition] for tp in tps]):
                assert time.monotonic() < deadline, f"timed out reading {topic}"
                for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                    out += [
                        (tp.partition, m.offset, m.key, m.value, dict(m.headers or ()))
                        for m in msgs
                        if m.offset < ends[tp.partition]
                    ]
        finally:
            await consumer.stop()
        return out

    async def usage_topic_cells(self) -> dict[tuple[int, str, str], int]:
        """active_ms per cell as the usage-cells topic holds it (partials deduplicated by ``src``)."""
        return (await self.usage_topic_summary())[0]

    async def usage_topic_summary(self) -> tuple[dict[tuple[int, str, str], int], int, int]:
        """``(active_ms per cell deduplicated by src, partials repeating a src, their active_ms)``."""
        seen: set[tuple[int, int, int]] = set()
        ms: dict[tuple[int, str, str], int] = defaultdict(int)
        repeats = repeated_ms = 0
        for _p, _o, _k, value in await self.read_topic(self.s.topic_usage_cells):
            assert value is not None
            partial = UsagePartial.decode(value)
            src = (partial.partition, partial.first_offset, partial.last_offset)
            if src in seen:
                repeats += 1
                repeated_ms += sum(row[4] for row in partial.rows)
                continue
            seen.add(src)
            for minute, app, sub_app, _token, active in partial.rows:
                ms[(minute, app, sub_app)] += active
        return dict(ms), repeats, repeated_ms

    def redis_dump(self) -> list[bytes]:
        """Every key of this run's prefix and every value in it (hash fields and values, set members,
        strings, list items), as bytes."""
        client = sync_redis_client(self.s)
        out: list[bytes] = []
        try:
            for key in client.scan_iter(match=f"{self.s.key_prefix}:*", count=1000):
                out.append(key)
                kind = client.type(key)
                if kind == b"hash":
                    for field_, value in client.hgetall(key).items():
                        out += [field_, value]
                elif kind == b"set":
                    out += list(client.smembers(key))
                elif kind == b"string":
                    out.append(client.get(key) or b"")
                elif kind == b"list":
                    out += client.lrange(key, 0, -1)
                elif kind == b"zset":
                    out += client.zrange(key, 0, -1)
        finally:
            client.close()
        return out

    def read_redis(self) -> RedisState:
        client = sync_redis_client(self.s, decode_responses=True)
        try:
            prefix = self.s.key_prefix
            presence: dict[tuple[str, str], dict[str, str]] = {}
            classes: dict[tuple[str, str], set[str]] = {}
            other: dict[str, Any] = {}
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                parts = key.split(":")
                if parts[1] == "presence" and len(parts) == 4:
                    presence[(parts[2], parts[3])] = client.hgetall(key)
                elif parts[1] == "class" and len(parts) == 4:
                    classes[(parts[2], parts[3])] = client.smembers(key)
                else:
                    other[key] = client.get(key) if client.type(key) == "string" else None
            return RedisState(presence, classes, other)
        finally:
            client.close()


@dataclass
class ClickHouseState:
    cells: dict[tuple[int, str, str], tuple[int, int]]  # (minute, app, sub_app) → (ms, students)
    public: dict[tuple[str, str, str], tuple[float, int]]  # (day, app, sub_app) → (s, students)
    strings: dict[str, list[str]]  # "table.column" → distinct values


@dataclass
class RedisState:
    presence: dict[tuple[str, str], dict[str, str]]
    classes: dict[tuple[str, str], set[str]]
    other: dict[str, Any]


_CHDB_READER = """
import json, sys
from sinks.clickhouse_client import clickhouse_client
path, db, queries = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
client = clickhouse_client("chdb://" + path)
out = {name: [list(r) for r in client.query(sql).result_rows] for name, sql in queries.items()}
strings = {}
columns = client.query(
    "SELECT c.table, c.name FROM system.columns AS c WHERE c.database = {db:String} "
    "AND c.type LIKE '%String%'", parameters={"db": db}).result_rows
for table, column in columns:
    rows = client.query(f"SELECT DISTINCT toString(`{column}`) FROM `{db}`.`{table}`").result_rows
    strings[f"{table}.{column}"] = [r[0] for r in rows]
out["strings"] = strings
print(json.dumps(out, default=str))
"""


def _chdb_read(path: Path, db: str, queries: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _CHDB_READER, str(path), db],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"reading chDB at {path} failed:\n{result.stderr[-3000:]}")
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


# --- what the truth says


def truth_of(report: SendReport, settings: Settings, now_ms: int | None = None) -> Truth:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return ground_truth(report.acked_events, TruthParams.from_settings(settings), now)


def expected_presence(
    truth: Truth, population: Iterable[Student]
) -> dict[tuple[str, str], dict[str, str]]:
    """The Redis hash of every rostered student: the truth's presence with the roster name; a student
    with a roster record but no event yet is offline with ``ts`` 0."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for student in population:
        key = (student.district_id, student.student_id)
        p = truth.presence.get(key)
        out[key] = {
            "name": student.name,
            "online": "1" if p is not None and p.online else "0",
            "app": p.app if p is not None else "",
            "sub_app": p.sub_app if p is not None else "",
            "ts": str(p.ts if p is not None else 0),
        }
    return out


def expected_cells(truth: Truth) -> dict[tuple[int, str, str], tuple[int, int]]:
    return {k: (c.active_ms, len(c.students)) for k, c in truth.cells.items()}


def expected_public(truth: Truth, k: int) -> dict[tuple[str, str, str], tuple[float, int]]:
    """The analysts' view from the truth: daily cells with at least ``k`` distinct students."""
    ms: dict[tuple[str, str, str], int] = defaultdict(int)
    students: dict[tuple[str, str, str], set[tuple[str, str]]] = defaultdict(set)
    for (minute, app, sub_app), cell in truth.cells.items():
        day = time.strftime("%Y-%m-%d", time.gmtime(minute - minute % DAY_S))
        ms[(day, app, sub_app)] += cell.active_ms
        students[(day, app, sub_app)] |= cell.students
    return {key: (ms[key] / 1000, len(who)) for key, who in students.items() if len(who) >= k}


def identifiers(population: Iterable[Student]) -> set[str]:
    """Every district, school, student and device id of the simulated population."""
    ids: set[str] = set()
    for s in population:
        ids |= {s.district_id, s.school_id, s.student_id, *s.devices}
    return ids


def leaked(values: Iterable[str], secrets: Iterable[str]) -> list[tuple[str, str]]:
    """``(value, secret)`` pairs where a value contains a secret."""
    wanted = [x for x in secrets if x]
    return [(v, x) for v in values for x in wanted if x in v]


# --- the comparison every scenario ends with


@dataclass
class Verdict:
    """Numbers of a compared run, for the report."""

    students: int
    online: int
    cells: int
    active_ms: int
    public_rows: int
    suppressed_rows: int
    string_values: int


async def verify(
    pipeline: Pipeline, report: SendReport, population: list[Student], *, check_ids: bool = True
) -> Verdict:
    """Stop the ClickHouse sink, then compare Redis and ClickHouse with the truth (asserts)."""
    code = pipeline.stop_clickhouse_sink()
    assert code == 0, (
        f"ClickHouse sink did not stop cleanly ({code}):\n{pipeline.clickhouse_sink.tail()}"
    )  # type: ignore[union-attr]
    truth = truth_of(report, pipeline.s)
    k = pipeline.s.k_anonymity

    # Redis: every rostered student's hash, exactly the five fields.
    state = pipeline.read_redis()
    want_presence = expected_presence(truth, population)
    assert all(
        set(h) == {"name", "online", "app", "sub_app", "ts"} for h in state.presence.values()
    )
    wrong = {
        k_: (state.presence.get(k_), v)
        for k_, v in want_presence.items()
        if state.presence.get(k_) != v
    }
    extra = set(state.presence) - set(want_presence)
    assert not wrong and not extra, (
        f"{len(wrong)} presence hashes differ (got, want), e.g. {list(wrong.items())[:5]}; extra {extra}"
    )
    want_classes: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in population:
        for c in s.classes:
            want_classes[(s.district_id, c)].add(s.student_id)
    assert state.classes == want_classes

    # ClickHouse: exact per-cell totals and distinct students; the analysts' view.
    ch = pipeline.read_clickhouse()
    want_cells = expected_cells(truth)
    diff = {
        key: (ch.cells.get(key), want_cells.get(key))
        for key in set(ch.cells) | set(want_cells)
        if ch.cells.get(key) != want_cells.get(key)
    }
    if diff:
        topic, repeats, repeated_ms = await pipeline.usage_topic_summary()
        raise AssertionError(
            f"{len(diff)} of {len(want_cells)} cells differ (got, want): {sorted(diff.items())[:8]}; "
            f"total active_ms in ClickHouse {sum(v[0] for v in ch.cells.values())}, in the usage-cells "
            f"topic {sum(topic.values())} (deduplicated by src; {repeats} partials repeat a src, "
            f"{repeated_ms} ms), truth {sum(v[0] for v in want_cells.values())}"
        )
    assert all(n >= k for _, n in ch.public.values()), "a public row has fewer than K students"
    want_public = expected_public(truth, k)
    assert set(ch.public) == set(want_public)
    for key, (seconds, n) in want_public.items():
        assert ch.public[key][1] == n
        assert abs(ch.public[key][0] - seconds) < 1e-6
    all_daily = expected_public(truth, 1)

    # No identifier of the simulation in any String column of any table.
    values = [v for vs in ch.strings.values() for v in vs]
    assert "app_minute.app" in ch.strings and "app_minute.sub_app" in ch.strings
    if check_ids:
        found = leaked(values, identifiers(population))
        assert not found, f"identifiers in ClickHouse: {found[:10]}"
    verdict = Verdict(
        students=len(want_presence),
        online=sum(1 for v in want_presence.values() if v["online"] == "1"),
        cells=len(want_cells),
        active_ms=sum(v[0] for v in want_cells.values()),
        public_rows=len(want_public),
        suppressed_rows=len(all_daily) - len(want_public),
        string_values=len(values),
    )
    say(f"verified against the truth: {verdict}")
    return verdict


DEFAULT_OPTIONS = SendOptions(count=5000, speed=0, rate=1000)
