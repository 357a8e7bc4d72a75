"""The collector's shared batcher: the valid events of every request of a few-millisecond window
go to the activity topic in per-partition envelopes (CONTRACT §2a), a student's events in order.

A request waits for the future :meth:`WindowBatcher.enqueue` returns: it is done once Kafka
acknowledged every envelope holding its events (or fails with Kafka's error).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from schemas.envelope import encode_envelopes
from schemas.event import ActivityEvent
from schemas.routing import partition_for_key

# Bound of the (district, student) -> partition cache.
_PARTITION_CACHE_MAX = 1 << 16


@dataclass
class _Pending:
    """Events of all requests waiting for the next flush, per partition."""

    events: dict[int, list[ActivityEvent]] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class WindowBatcher:
    """Windows of events, per partition, sent as envelopes by ``producer`` to ``topic``."""

    def __init__(self, producer: Any, topic: str, partitions: int, linger_ms: int) -> None:
        self.producer, self.topic, self.partitions = producer, topic, partitions
        self.linger_s = linger_ms / 1000
        self._pending = _Pending()
        self._flushers: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._send_lock = asyncio.Lock()
        # Flushes sent whose acknowledgements are still awaited, and the event that Kafka has
        # acknowledged all of them (the producer is idle).
        self._unacked_flushes = 0
        self._kafka_idle = asyncio.Event()
        self._kafka_idle.set()
        self._partition_of: dict[tuple[str, str], int] = {}

    def set_partitions(self, partitions: int) -> None:
        """The activity topic's partition count as the broker reports it."""
        self.partitions = partitions
        self._partition_of.clear()

    def enqueue(self, events: list[ActivityEvent]) -> asyncio.Future[None]:
        """Add valid events to the window; the future is done once Kafka acknowledged them."""
        known = self._partition_of
        if len(known) > _PARTITION_CACHE_MAX:
            known.clear()
        groups = self._pending.events
        for event in events:
            student = (event[3], event[4])  # (district_id, student_id)
            partition = known.get(student)
            if partition is None:
                partition = partition_for_key(event.student_key.encode(), self.partitions)
                known[student] = partition
            group = groups.get(partition)
            if group is None:
                groups[partition] = [event]
            else:
                group.append(event)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.waiters.append(done)
        if not self._flush_scheduled:
            # One flush per window; a window's flush does not wait for the previous window's
            # acknowledgements (only its sends are ordered after them, by the lock).
            self._flush_scheduled = True
            self._flushers.add(task := asyncio.create_task(self._flush_later()))
            task.add_done_callback(self._flushers.discard)
        return done

    async def _flush_later(self) -> None:
        """Send the window's events once Kafka is idle, or after the linger at the latest.

        Devices wait for Kafka's acknowledgement, and the idempotent producer has one request in
        flight per broker: while a flush is unacknowledged, the next one could only queue behind
        it, so the window gathers events until then (bigger envelopes, no added wait). When
        Kafka is idle the window closes at once (after the requests already decoded in this
        turn of the event loop joined it): a fixed linger would only add latency there.
        """
        if self._kafka_idle.is_set():
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kafka_idle.wait(), self.linger_s)
        pending, self._pending = self._pending, _Pending()
        self._flush_scheduled = False
        self._unacked_flushes += 1
        self._kafka_idle.clear()
        try:
            sends = []
            async with self._send_lock:  # a student's events stay in order across windows
                for partition, events in pending.events.items():
                    for chunk in encode_envelopes(events):
                        sends.append(
                            await self.producer.send(self.topic, chunk, partition=partition)
                        )
            await asyncio.gather(*sends)
        except Exception as exc:  # noqa: BLE001 - every waiting request learns of the failure
            for waiter in pending.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        finally:
            self._unacked_flushes -= 1
            if not self._unacked_flushes:
                self._kafka_idle.set()
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(None)
