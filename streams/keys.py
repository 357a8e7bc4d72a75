"""The Kafka side of the daily key store (see ``streams.student_token`` for the design).

One compacted single-partition topic; record key ``{day}:{nonce}``, value the 32-byte key, tombstone
= destroyed. A worker missing a day's key produces a candidate, reads the topic to its end and takes
the lowest-offset candidate of that day, which every worker agrees on.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from csync.kafka_client import kafka_options
from csync.settings import Settings
from streams.student_token import DayKeyStore, new_key


class DayKeyExchange:
    """Keeps a :class:`DayKeyStore` in sync with the key topic; destroys keys of closed days."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.s = settings
        self.producer = producer
        self.store = DayKeyStore()
        self.tp = TopicPartition(settings.topic_day_keys, 0)
        self._records: dict[int, list[bytes]] = {}  # day -> record keys, for tombstones
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.kafka_bootstrap,
            enable_auto_commit=False,
            **kafka_options(self.s),
        )
        await self._consumer.start()
        self._consumer.assign([self.tp])
        await self._consumer.seek_to_beginning(self.tp)
        await self._catch_up()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _catch_up(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101
        end = (await consumer.end_offsets([self.tp]))[self.tp]
        while await consumer.position(self.tp) < end:
            got = await consumer.getmany(self.tp, timeout_ms=500)
            for m in got.get(self.tp, []):
                self._apply(m)

    def _apply(self, m: Any) -> None:
        if m.key is None:
            return
        day_text, _, _nonce = m.key.decode().partition(":")
        if not day_text.isdigit():
            return
        day = int(day_text)
        self._records.setdefault(day, []).append(m.key)
        self.store.offer(day, m.offset, m.value)

    async def ensure(self, days: set[int]) -> None:
        """Make sure the agreed key of every day in ``days`` is known (creating candidates if
        needed)."""
        missing = self.store.missing_days(days)
        if not missing:
            return
        await self._catch_up()
        for day in sorted(self.store.missing_days(days)):
            record_key = f"{day}:{secrets.token_hex(8)}".encode()
            await (await self.producer.send(self.s.topic_day_keys, new_key(), key=record_key))
        await self._catch_up()
        await self.destroy_expired()

    async def destroy_expired(self) -> None:
        """Tombstone and forget the keys of days that can no longer receive events."""
        s = self.s
        slack = (s.allowed_lateness_s + s.usage_close_after_s + s.max_gap_s) * 1000
        for day in self.store.expired_days(
            int(time.time() * 1000), s.max_event_age_h * 3_600_000, slack
        ):
            for record_key in self._records.pop(day, []):
                await self.producer.send(s.topic_day_keys, None, key=record_key)
            self.store.offer(day, 0, None)
