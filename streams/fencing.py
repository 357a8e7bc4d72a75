"""One transactional producer per owned input partition: what fences a stalled (zombie) worker.

Partition ``p``'s producer has ``transactional_id = f"{WORKER_GROUP}-p{p}"``, whichever worker owns
``p``. Starting it (:meth:`PartitionProducers.open`, before the partition's batch log is read)
runs Kafka's InitProducerId: the broker bumps the id's epoch, which fences the producer of the
previous owner — its next send or commit fails with ``ProducerFenced`` — and completes that
producer's open transaction (aborts it, or finishes a commit already decided). A
``read_committed`` read of the log after :meth:`open` is therefore final: nothing the old owner
still holds can land after it.

:meth:`PartitionProducers.transaction` wraps one unit of work (a batch's intent and outputs, or a
snapshot) in a transaction: everything sent inside lands together at commit or not at all. A
fenced producer raises :class:`streams.ordering.Fenced` and is closed: its partition belongs to
another worker now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced, UnknownProducerId

from csync.kafka_client import producer_options
from csync.settings import Settings
from streams.ordering import Fenced

log = logging.getLogger(__name__)
# What a producer whose epoch was bumped by a newer owner of its transactional id gets.
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch, UnknownProducerId)
ABORT_TIMEOUT_S = 10.0


def transactional_id(settings: Settings, partition: int) -> str:
    """The transactional id of input partition ``partition``'s producer (same on every worker)."""
    return f"{settings.worker_group}-p{partition}"


class PartitionProducers:
    """The transactional producers of the partitions this worker owns."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._producers: dict[int, AIOKafkaProducer] = {}

    def producer(self, partition: int) -> AIOKafkaProducer:
        """The producer of an owned partition (opened by :meth:`open`)."""
        return self._producers[partition]

    async def open(self, partition: int) -> None:
        """Start ``partition``'s producer: fences its previous owner (see the module docstring).
        A no-op when it is open already (a fenced producer is closed at once)."""
        if partition in self._producers:
            return
        s = self.s
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            **producer_options(s),
            transactional_id=transactional_id(s, partition),
            linger_ms=s.worker_linger_ms,
            max_request_size=64 * 1024 * 1024,
            max_batch_size=1024 * 1024,
        )
        await producer.start()
        self._producers[partition] = producer

    async def close(self, partition: int) -> None:
        """Stop ``partition``'s producer (revoked or fenced); a no-op if there is none."""
        producer = self._producers.pop(partition, None)
        if producer is not None:
            with contextlib.suppress(Exception):  # a fenced producer may fail to stop cleanly
                await producer.stop()

    async def close_all(self) -> None:
        for partition in list(self._producers):
            await self.close(partition)

    @contextlib.asynccontextmanager
    async def transaction(self, partition: int) -> AsyncIterator[None]:
        """Everything ``partition``'s producer sends inside lands at once, or nothing does.

        Raises :class:`~streams.ordering.Fenced` (and closes the producer) when a newer owner
        fenced it; any other failure aborts the transaction and propagates.
        """
        producer = self._producers.get(partition)
        if producer is None:
            raise Fenced(partition)
        try:
            await producer.begin_transaction()
            yield
            await producer.commit_transaction()
        except FENCED_ERRORS as exc:
            log.warning(
                "partition %d: fenced by its new owner, nothing of it lands here", partition
            )
            await self.close(partition)
            raise Fenced(partition) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), ABORT_TIMEOUT_S)
            raise
