"""Redis presence sink against a real redis-server: the CONTRACT §4 shape, ordering, outage and recovery."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.internal import PresenceChange
from sinks.redis_presence import RedisPresenceSink
from sinks.shape import FlushResult, SourceRewind

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server this test module runs; can be stopped and started again on the same port."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=2)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def change(student: str = "s1", ts: int = 1_000, **kw: object) -> PresenceChange:
    base = PresenceChange(
        district_id="d1",
        student_id=student,
        name=f"Name {student}",
        online=True,
        app="docs",
        sub_app="essay",
        ts=ts,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def as_record(c: PresenceChange, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    value = c.encode()
    return ConsumerRecord("p", 0, offset, 0, 0, c.key, value, None, len(c.key), len(value), [])


async def apply(sink: RedisPresenceSink, *changes: PresenceChange) -> FlushResult:
    for i, c in enumerate(changes):
        sink.add(as_record(c, i))
    return await sink.flush()


async def snapshot(redis: Redis, prefix: str) -> dict[str, object]:
    """Every key under ``prefix`` with its value (hash or set) — the state a teacher view reads."""
    out: dict[str, object] = {}
    async for key in redis.scan_iter(f"{prefix}:*"):
        kind = await redis.type(key)
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "set":
            out[key] = sorted(await redis.smembers(key))
        else:
            out[key] = await redis.get(key)
    return out


async def test_presence_hash_has_exactly_the_contract_fields(redis: Redis, prefix: str) -> None:
    sink = RedisPresenceSink(redis, key_prefix=prefix, ttl_s=3600, rewind_when_empty=False)
    await apply(sink, change(classes_add=("c-101", "c-205")))
    key = f"{prefix}:presence:d1:s1"
    assert await redis.hgetall(key) == {
        "name": "Name s1", "online": "1", "app": "docs", "sub_app": "essay", "ts": "1000",
    }  # fmt: skip
    assert 3590 < await redis.ttl(key) <= 3600
    assert await redis.smembers(f"{prefix}:class:d1:c-101") == {"s1"}
    assert await redis.smembers(f"{prefix}:class:d1:c-205") == {"s1"}

    # Offline: app and sub_app are "" whatever the change carried; the TTL is refreshed.
    await redis.expire(key, 10)
    await apply(sink, change(ts=2_000, online=False, app="docs", sub_app="essay"))
    assert await redis.hgetall(key) == {
        "name": "Name s1", "online": "0", "app": "", "sub_app": "", "ts": "2000",
    }  # fmt: skip
    assert await redis.ttl(key) > 3000


async def test_older_change_never_overwrites_newer(redis: Redis, prefix: str) -> None:
    sink = RedisPresenceSink(redis, key_prefix=prefix, rewind_when_empty=False)
    key = f"{prefix}:presence:d1:s1"
    await apply(sink, change(ts=5_000, sub_app="new"))
    stale = await apply(sink, change(ts=4_999, sub_app="old"))  # a later batch, older state
    assert (await redis.hgetall(key))["sub_app"] == "new"
    assert stale == FlushResult(batches=1, rows=1, stale=1)  # what the loop counts as stale
    # Within one batch as well.
    both = await apply(sink, change(ts=7_000, sub_app="seven"), change(ts=6_000, sub_app="six"))
    assert both == FlushResult(batches=1, rows=2, stale=1)
    assert (await redis.hgetall(key))["sub_app"] == "seven"
    # Equal ts: the later record wins.
    await apply(sink, change(ts=7_000, sub_app="seven-b"))
    assert (await redis.hgetall(key))["sub_app"] == "seven-b"


async def test_class_moves_and_delete(redis: Redis, prefix: str) -> None:
    sink = RedisPresenceSink(redis, key_prefix=prefix, rewind_when_empty=False)
    await apply(sink, change("s1", classes_add=("a", "b")), change("s2", classes_add=("a",)))
    await apply(sink, change("s1", ts=2_000, classes_add=("c",), classes_remove=("b",)))
    assert await redis.smembers(f"{prefix}:class:d1:a") == {"s1", "s2"}
    assert await redis.smembers(f"{prefix}:class:d1:b") == set()
    assert await redis.smembers(f"{prefix}:class:d1:c") == {"s1"}
    # The student leaves the roster: hash gone, out of every class it was in; s2 untouched.
    await apply(sink, change("s1", ts=1, deleted=True, classes_remove=("a", "c")))
    assert await redis.exists(f"{prefix}:presence:d1:s1") == 0
    assert await redis.smembers(f"{prefix}:class:d1:a") == {"s2"}
    assert await redis.smembers(f"{prefix}:class:d1:c") == set()
    assert await redis.hget(f"{prefix}:presence:d1:s2", "online") == "1"


def workload(n: int) -> list[PresenceChange]:
    """A mixed stream: students going on/offline, switching apps, moving classes, some leaving."""
    out = []
    for i in range(n):
        student = f"s{i % 37}"
        ts = 10_000 + i * 50 - (i % 5) * 120  # some changes arrive older than what preceded them
        kw: dict[str, object] = {"online": i % 4 != 0, "sub_app": f"site{i % 11}"}
        if i % 13 == 0:
            kw["classes_add"] = (f"c{i % 3}",)
            kw["classes_remove"] = (f"c{(i + 1) % 3}",)
        if i % 97 == 96:
            kw["deleted"] = True
            kw["classes_remove"] = ("c0", "c1", "c2")
        out.append(change(student, ts=ts, **kw))
    return out


async def test_redis_outage_mid_run_ends_in_the_same_state(
    redis_server: RedisServer, redis: Redis, prefix: str
) -> None:
    changes = workload(600)
    # Reference: the same changes, same batches, no outage.
    ref_prefix = prefix + "ref"
    ref = RedisPresenceSink(redis, key_prefix=ref_prefix, rewind_when_empty=False)
    for start in range(0, len(changes), 50):
        await apply(ref, *changes[start : start + 50])
    reference = {
        k.replace(ref_prefix, prefix, 1): v for k, v in (await snapshot(redis, ref_prefix)).items()
    }

    # The sink as the loop drives it: retry on connection errors, re-read from offset 0 on SourceRewind.
    sink = RedisPresenceSink(redis, key_prefix=prefix)
    failures = rewinds = 0
    position = 0  # the consumer's position: the next change to read
    while position < len(changes):
        if position == 300 and failures == 0:
            redis_server.stop()  # Redis dies mid-run and loses everything (no persistence)
        batch = changes[position : position + 50]
        for i, c in enumerate(batch):
            sink.add(as_record(c, position + i))
        while True:
            try:
                await sink.flush()
                position += len(batch)
                break
            except SourceRewind:
                rewinds += 1
                sink.discard()
                position = 0
                break
            except RedisConnectionError:
                failures += 1
                assert len(sink) == len(batch)  # nothing dropped while down
                if failures == 3:
                    redis_server.start()
                await asyncio.sleep(0.05)
    # One rewind at the very start (fresh Redis), one after the restart.
    assert rewinds == 2
    assert failures >= 3
    assert await snapshot(redis, prefix) == reference
    await redis.flushdb()


async def test_loop_redelivery_is_idempotent(redis: Redis, prefix: str) -> None:
    """A crash before commit re-delivers a batch that was already applied: same final state."""
    changes = workload(200)
    sink = RedisPresenceSink(redis, key_prefix=prefix, rewind_when_empty=False)
    await apply(sink, *changes)
    once = await snapshot(redis, prefix)
    await apply(sink, *changes[120:])
    await apply(sink, *changes)
    assert await snapshot(redis, prefix) == once
