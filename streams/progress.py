"""Committed group offsets that follow what the worker has processed, for lag monitoring.

After a batch's outputs were acknowledged, the worker marks the offsets just past it; at most
once per ``WORKER_COMMIT_INTERVAL_S`` the marked offsets are committed in the background
(fire-and-forget: the hot path never waits, one commit in flight at a time, a failed commit only
logs and is retried with the next marks). Recovery never reads these offsets: it uses the batch log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K")  # what an offset belongs to (a TopicPartition in the worker)


class Progress(Generic[K]):
    """Offsets to commit per key; :meth:`tick` commits them when the interval has passed."""

    def __init__(
        self,
        commit: Callable[[dict[K, int]], Awaitable[object]],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._commit = commit
        self.interval_s = interval_s
        self._clock = clock
        self._marked: dict[K, int] = {}
        self._committed: dict[K, int] = {}
        self._last = clock()
        self._task: asyncio.Task[None] | None = None

    def mark(self, key: K, next_offset: int) -> None:
        """Everything of ``key`` before ``next_offset`` is processed and its outputs acked."""
        if next_offset > self._marked.get(key, -1):
            self._marked[key] = next_offset

    def forget(self, keys: list[K]) -> None:
        """These keys left this worker: nothing more of them is committed here."""
        for key in keys:
            self._marked.pop(key, None)
            self._committed.pop(key, None)

    def due(self) -> dict[K, int]:
        """The marked offsets not committed yet."""
        return {k: o for k, o in self._marked.items() if self._committed.get(k) != o}

    def tick(self) -> None:
        """Start a commit in the background if the interval passed and something is new."""
        if self._task is not None and not self._task.done():
            return  # one commit in flight at a time
        now = self._clock()
        if now - self._last < self.interval_s:
            return
        offsets = self.due()
        if not offsets:
            return
        self._last = now
        self._task = asyncio.ensure_future(self._run(offsets))

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Finish the commit in flight, then commit what is due now (stop, revocation).

        Each waits at most ``timeout_s`` and is cancelled after that: a commit that outlived a
        revocation could land after the partition's next owner committed, moving its offset back.
        """
        task, self._task = self._task, None
        if task is not None and not (await asyncio.wait({task}, timeout=timeout_s))[0]:
            task.cancel()
            await asyncio.wait({task})
        offsets = self.due()
        if offsets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._run(offsets), timeout_s)

    async def _run(self, offsets: dict[K, int]) -> None:
        try:
            await self._commit(offsets)
        except Exception:  # noqa: BLE001 - informational only (lag monitoring); retried next tick
            log.warning("offset commit failed for %d partitions", len(offsets), exc_info=True)
            return
        for key, offset in offsets.items():
            if key in self._marked:
                self._committed[key] = offset
