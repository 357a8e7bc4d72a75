"""Committed offsets follow acked batches, at most once per interval, without blocking or failing."""

from __future__ import annotations

import asyncio

import pytest

from streams.progress import Progress


class Commits:
    def __init__(self) -> None:
        self.calls: list[dict[str, int]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, offsets: dict[str, int]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.calls.append(dict(offsets))
        if self.fail:
            raise RuntimeError("broker away")


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_commits_what_was_marked_at_most_once_per_interval() -> None:
    now = [0.0]
    commits = Commits()
    progress = Progress(commits, 1.0, clock=lambda: now[0])
    progress.mark("a", 10)
    progress.tick()  # the interval has not passed since the start
    await settle()
    assert commits.calls == []
    now[0] = 1.0
    progress.mark("a", 20)
    progress.mark("b", 5)
    progress.mark("a", 15)  # never backwards
    progress.tick()
    await settle()
    assert commits.calls == [{"a": 20, "b": 5}]
    now[0] = 1.5
    progress.mark("a", 30)
    progress.tick()
    await settle()
    assert len(commits.calls) == 1
    now[0] = 2.5
    progress.tick()
    await settle()
    assert commits.calls[-1] == {"a": 30}  # only what changed
    now[0] = 4.0
    progress.tick()
    await settle()
    assert len(commits.calls) == 2  # nothing new: no commit


async def test_tick_never_waits_and_one_commit_is_in_flight() -> None:
    now = [0.0]
    commits = Commits()
    commits.gate = asyncio.Event()
    progress = Progress(commits, 1.0, clock=lambda: now[0])
    now[0] = 5.0
    progress.mark("a", 1)
    progress.tick()  # returns at once although the commit waits
    now[0] = 7.0
    progress.mark("a", 2)
    progress.tick()  # the first is still in flight: no second one
    commits.gate.set()
    await settle()
    assert commits.calls == [{"a": 1}]
    await progress.flush()
    assert commits.calls == [{"a": 1}, {"a": 2}]


async def test_a_failed_commit_only_logs_and_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    commits = Commits()
    commits.fail = True
    progress = Progress(commits, 1.0, clock=lambda: now[0])
    now[0] = 2.0
    progress.mark("a", 7)
    progress.tick()
    await settle()
    assert progress.due() == {"a": 7}
    assert "offset commit failed" in caplog.text
    commits.fail = False
    now[0] = 3.0
    progress.tick()
    await settle()
    assert commits.calls == [{"a": 7}, {"a": 7}] and progress.due() == {}


async def test_forgotten_partitions_are_not_committed() -> None:
    commits = Commits()
    progress = Progress(commits, 1.0, clock=lambda: 10.0)
    progress.mark("a", 3)
    progress.mark("b", 4)
    progress.forget(["a"])
    await progress.flush()
    assert commits.calls == [{"b": 4}]


async def test_flush_cancels_a_commit_that_hangs_so_it_never_lands_late() -> None:
    now = [0.0]
    commits = Commits()
    commits.gate = asyncio.Event()  # the broker does not answer
    progress = Progress(commits, 1.0, clock=lambda: now[0])
    now[0] = 2.0
    progress.mark("a", 1)
    progress.tick()  # in flight, hanging
    await settle()
    await progress.flush(timeout_s=0.05)  # a revocation: gives up on both commits
    commits.gate.set()  # the broker is back
    await settle()
    assert commits.calls == [] and progress.due() == {"a": 1}
