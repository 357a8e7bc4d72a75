"""Reading whole topics and topic configs for the privacy commands (purge, retention).

Purge must see every record of a district, so these helpers read a topic from its first to its last offset as
of the call (records produced later are not waited for) with a consumer that joins no group and commits
nothing: a privacy scan never moves a pipeline consumer's offsets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType


@dataclass(frozen=True, slots=True)
class Latest:
    """The latest record of one key in one partition (``value`` ``None`` = tombstone)."""

    partition: int
    offset: int
    value: bytes | None


def new_reader(bootstrap: str, **security: Any) -> AIOKafkaConsumer:
    """A group-less consumer that never commits (started by the caller); ``security``:
    :func:`csync.kafka_client.kafka_options`."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **security,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=64 * 1024 * 1024,
        fetch_max_wait_ms=50,  # a scan reads to a known end: never wait for new records
    )


async def partitions_of(reader: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partitions of ``topic`` (empty if it does not exist)."""
    partitions = reader.partitions_for_topic(topic)
    if partitions is None:
        # The topic is new to this client; ``topics()`` fetches metadata without keeping it, so ask the
        # fetched cluster directly.
        cluster = await reader._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
    return sorted(partitions or ())


async def scan_records(
    reader: AIOKafkaConsumer, topic: str, start: dict[int, int] | None = None
) -> AsyncIterator[Any]:
    """Every record of ``topic`` from the beginning to its end as of now.

    With ``start``, only the partitions it names, each from ``start[partition]``.
    """
    partitions = await partitions_of(reader, topic)
    if start is not None:
        partitions = [p for p in partitions if p in start]
    if not partitions:
        return
    tps = [TopicPartition(topic, p) for p in partitions]
    ends = await reader.end_offsets(tps)
    begins = await reader.beginning_offsets(tps)
    pending: set[TopicPartition] = set()
    for tp in tps:
        first = max(begins[tp], (start or {}).get(tp.partition, begins[tp]))
        if first < ends[tp]:
            pending.add(tp)
    reader.assign(
        list(pending)
    )  # only partitions with records to read: no fetch waits on the others
    for tp in pending:
        reader.seek(tp, max(begins[tp], (start or {}).get(tp.partition, begins[tp])))
    while pending:
        got = await reader.getmany(*pending, timeout_ms=1000)
        for tp, messages in got.items():
            for m in messages:
                if m.offset < ends[tp]:
                    yield m
        for tp in list(pending):
            if await reader.position(tp) >= ends[tp]:
                pending.discard(tp)
                reader.pause(tp)


async def latest_by_key(
    reader: AIOKafkaConsumer, topic: str, key_prefix: bytes | None = None
) -> dict[bytes, Latest]:
    """The latest record of every key (optionally only keys starting with ``key_prefix``)."""
    latest: dict[bytes, Latest] = {}
    async for m in scan_records(reader, topic):
        if m.key is None or (key_prefix is not None and not m.key.startswith(key_prefix)):
            continue
        latest[m.key] = Latest(m.partition, m.offset, m.value)
    return latest


async def topic_configs(
    bootstrap: str, topics: list[str], **security: Any
) -> dict[str, dict[str, str]]:
    """The broker's effective config of each existing topic (missing topics are left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000, **security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        if not wanted:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in wanted]
        configs: dict[str, dict[str, str]] = {}
        for response in await admin.describe_configs(resources):
            for resource in response.resources:
                _err, _msg, _type, name, entries = resource[:5]
                configs[name] = {entry[0]: entry[1] for entry in entries}
        return configs
    finally:
        await admin.close()
