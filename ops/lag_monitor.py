"""The lag monitor: samples our consumer groups' committed offsets and the partitions' end offsets.

Every ``LAG_SAMPLE_INTERVAL_S`` it lists the consumer groups whose id starts with ``LAG_GROUP_PREFIX`` (the stream
worker, the faust app, the sinks), reads each group's committed offsets (OffsetFetch) and members (DescribeGroups)
and the end offsets of those partitions (ListOffsets, read-uncommitted, as ``kafka-consumer-groups`` does), then
applies the pure rules of :mod:`ops.lag` and exports the gauges of :mod:`csync.metrics` (``csync_lag_*``).

Which partitions are shown follows ``kafka-consumer-groups --describe``: those with a committed offset, plus
those assigned to a live member without one (offset lag ``None``, printed ``-``).

Why its own process (``csync lag serve``) rather than a task inside the worker or a sink: lag is the one metric
that must keep working when those processes are stopped, stuck or crash-looping — a worker that reports its own
lag goes silent exactly when its lag matters, and N workers would export N copies of one group's lag. A single
small process per cluster (like Burrow or kafka-lag-exporter) sees every group from outside, keeps its sliding
windows across worker restarts, and costs one admin connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.protocol.admin import DescribeGroupsRequest_v1, DescribeGroupsRequest_v2
from aiokafka.protocol.api import Request
from aiokafka.structs import TopicPartition

from csync import metrics
from csync.kafka_client import check_credentials, kafka_options
from csync.settings import Settings, SettingsError
from ops.lag import (
    Commit,
    Point,
    Rules,
    Status,
    add_commit,
    add_point,
    group_status,
    offset_lag,
    partition_status,
    should_record_commit,
    time_lag_s,
    window_size,
)
from ops.topic_retention import TopicRetention

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of one group at one sample."""

    topic: str
    partition: int
    end_offset: int
    committed: int | None
    lag: int | None
    time_lag_s: float | None
    status: Status


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One group at one sample."""

    group: str
    state: str
    members: int
    partitions: tuple[PartitionLag, ...]
    status: Status
    error: str = ""

    def topics(self) -> list[str]:
        return sorted({p.topic for p in self.partitions})


@dataclass(frozen=True, slots=True)
class _GroupInfo:
    state: str
    members: int
    assigned: frozenset[TopicPartition]


class _DescribeGroups(Request[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2]):  # type: ignore[misc]
    """DescribeGroups capped at v2: aiokafka 0.14 decodes a v3 answer with the v2 schema (it lacks
    ``authorized_operations``), which fails with "Buffer underrun" against Kafka 4."""

    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self._groups = groups

    def build(
        self, request_struct_class: type[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2]
    ) -> DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2:
        return request_struct_class(self._groups)


class LagMonitor:
    """Samples lag through the real broker; keeps the lookup tables and Burrow windows between samples."""

    def __init__(
        self,
        settings: Settings,
        groups: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.lag_window < 1 or settings.lag_table_points < 2:
            raise SettingsError("LAG_WINDOW must be >= 1 and LAG_TABLE_POINTS >= 2")
        if settings.lag_sample_interval_s <= 0:
            raise SettingsError("LAG_SAMPLE_INTERVAL_S must be > 0")
        if settings.lag_min_span_s < 0 or settings.lag_noise_s < 0:
            raise SettingsError("LAG_MIN_SPAN_S and LAG_NOISE_S must be >= 0")
        self.rules = Rules(settings.lag_min_span_s, settings.lag_noise_s)
        self.window = window_size(
            settings.lag_window, settings.lag_sample_interval_s, settings.lag_min_span_s
        )
        self.settings = settings
        self.fixed_groups = list(groups) if groups is not None else None
        self.clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tables: dict[TopicPartition, tuple[Point, ...]] = {}
        self._windows: dict[tuple[str, TopicPartition], tuple[Commit, ...]] = {}
        self._exported: set[tuple[str, str, str]] = set()
        self._exported_ends: set[tuple[str, str]] = set()
        self._exported_groups: set[str] = set()
        self.last_sample_ok = False
        self.last_report: list[GroupLag] = []
        self._retention = TopicRetention()

    async def start(self) -> None:
        """Connect the admin client and an offsets-only consumer (no group)."""
        bootstrap = self.settings.kafka_bootstrap
        await check_credentials(self.settings)  # a rejected login: one clear error, at once
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="csync-lag", **kafka_options(self.settings)
        )
        await self._admin.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            **kafka_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            client_id="csync-lag",
            isolation_level="read_uncommitted",
        )
        await self._consumer.start()

    async def stop(self) -> None:
        """Close the clients (idempotent)."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def __aenter__(self) -> LagMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------------------ sampling

    async def list_groups(self) -> list[str]:
        """Our groups: the fixed list, or every group whose id starts with the prefix setting."""
        if self.fixed_groups is not None:
            return list(self.fixed_groups)
        rows = await self._admin_client().list_consumer_groups()
        prefix = self.settings.lag_group_prefix
        return sorted({str(row[0]) for row in rows if str(row[0]).startswith(prefix)})

    async def sample(self) -> list[GroupLag]:
        """One sample of every group; updates the windows, exports the gauges, returns the report."""
        try:
            groups = await self.list_groups()
            infos = await self._describe(groups)
            committed: dict[str, dict[TopicPartition, int]] = {}
            errors: dict[str, str] = {}
            # Time lag is "how far behind was the group when its offsets were read", so a slow sample (many
            # groups, a busy broker) does not add its own duration to the lag of the groups read first.
            read_at: dict[str, float] = {}
            for group in groups:
                try:
                    committed[group] = await self._committed(group)
                    read_at[group] = self.clock()
                except Exception as exc:  # one unreadable group must not hide the others
                    errors[group] = f"{type(exc).__name__}: {exc}"
            wanted: set[TopicPartition] = set()
            for group in groups:
                wanted |= set(committed.get(group, {})) | infos[group].assigned
            ends = await self._end_offsets(wanted)
        except Exception:
            metrics.LAG_SAMPLES.labels("error").inc()
            self.last_sample_ok = False
            raise
        now = self.clock()
        for tp, end in ends.items():
            self._tables[tp] = add_point(
                self._tables.get(tp, ()), Point(end, now), self.settings.lag_table_points
            )
        report = [
            self._evaluate(
                g, infos[g], committed.get(g, {}), ends, now, read_at.get(g, now), errors.get(g, "")
            )
            for g in groups
        ]
        self.export(report, ends)
        await self._retention.refresh(self._admin_client(), {tp.topic for tp in ends}, now)
        metrics.LAG_SAMPLES.labels("ok").inc()
        self.last_sample_ok = True
        self.last_report = report
        return report

    def _evaluate(
        self,
        group: str,
        info: _GroupInfo,
        committed: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        now: float,
        read_at: float,
        error: str,
    ) -> GroupLag:
        if error:
            return GroupLag(group, info.state, info.members, (), Status.ERR, error)
        rows = []
        for tp in sorted(set(committed) | info.assigned):
            if tp not in ends:
                continue  # topic deleted since the group committed: nothing to read
            offset = committed.get(tp)
            lag = offset_lag(ends[tp], offset)
            key = (group, tp)
            window = self._windows.get(key, ())
            if (
                offset is not None
                and lag is not None
                and should_record_commit(window, offset, info.members > 0)
            ):
                window = add_commit(window, Commit(offset, now, lag), self.window)
                self._windows[key] = window
            rows.append(
                PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    end_offset=ends[tp],
                    committed=offset,
                    lag=lag,
                    time_lag_s=time_lag_s(self._tables.get(tp, ()), offset, read_at),
                    status=partition_status(window, lag, now, self.rules),
                )
            )
        return GroupLag(
            group, info.state, info.members, tuple(rows), group_status(r.status for r in rows)
        )

    async def _describe(self, groups: list[str]) -> dict[str, _GroupInfo]:
        infos = {g: _GroupInfo("Unknown", 0, frozenset()) for g in groups}
        if not groups:
            return infos
        admin = self._admin_client()
        responses: list[Any] = []
        with contextlib.suppress(Exception):  # state/assignment are extras; offsets still tell lag
            for group in groups:
                node = await admin.find_coordinator(group)
                responses.append(await admin._send_request(_DescribeGroups([group]), node))  # noqa: SLF001
        for response in responses:
            for desc in response.to_object()["groups"]:
                members = desc.get("members") or []
                assigned: set[TopicPartition] = set()
                for member in members:
                    raw = member.get("member_assignment") or b""
                    with contextlib.suppress(Exception):  # a non-consumer protocol: no assignment
                        assigned |= set(ConsumerProtocolMemberAssignment.decode(raw).partitions())
                infos[desc["group"]] = _GroupInfo(
                    str(desc.get("state") or "Unknown"), len(members), frozenset(assigned)
                )
        return infos

    async def _committed(self, group: str) -> dict[TopicPartition, int]:
        offsets = await self._admin_client().list_consumer_group_offsets(group)
        return {tp: int(meta.offset) for tp, meta in offsets.items() if meta.offset >= 0}

    async def _end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        tps = sorted(partitions)
        if not tps:
            return {}
        consumer = self._offsets_consumer()
        known = set()
        for topic in {tp.topic for tp in tps}:
            for p in consumer.partitions_for_topic(topic) or ():
                known.add(TopicPartition(topic, p))
        missing = {tp.topic for tp in tps if tp not in known}
        if missing:
            consumer._client.set_topics(list(set(consumer._client._topics) | missing))  # noqa: SLF001
            await consumer._client.force_metadata_update()  # noqa: SLF001
            known |= {
                TopicPartition(t, p)
                for t in missing
                for p in consumer.partitions_for_topic(t) or ()
            }
        present = [tp for tp in tps if tp in known]
        if not present:
            return {}
        ends = await consumer.end_offsets(present)
        return {tp: int(off) for tp, off in ends.items()}

    # ------------------------------------------------------------------------------------------ export

    def export(self, report: list[GroupLag], ends: dict[TopicPartition, int]) -> None:
        """Set the gauges for this sample and remove the series of groups/partitions that went away."""
        seen: set[tuple[str, str, str]] = set()
        for g in report:
            for p in g.partitions:
                labels = (g.group, p.topic, str(p.partition))
                if p.lag is None or p.committed is None:
                    continue
                seen.add(labels)
                metrics.LAG_OFFSETS.labels(*labels).set(p.lag)
                metrics.COMMITTED_OFFSET.labels(*labels).set(p.committed)
                if p.time_lag_s is not None:
                    metrics.LAG_SECONDS.labels(*labels).set(p.time_lag_s)
                else:
                    with contextlib.suppress(KeyError):
                        metrics.LAG_SECONDS.remove(*labels)
            for status in Status:
                metrics.LAG_STATUS.labels(g.group, status.name).set(1 if status is g.status else 0)
        for labels in self._exported - seen:
            for gauge in (metrics.LAG_OFFSETS, metrics.LAG_SECONDS, metrics.COMMITTED_OFFSET):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self._exported = seen
        end_labels = {(tp.topic, str(tp.partition)) for tp in ends}
        for tp, end in ends.items():
            metrics.END_OFFSET.labels(tp.topic, str(tp.partition)).set(end)
        for labels2 in self._exported_ends - end_labels:
            with contextlib.suppress(KeyError):
                metrics.END_OFFSET.remove(*labels2)
        self._exported_ends = end_labels
        groups = {g.group for g in report}
        for gone in self._exported_groups - groups:
            for status in Status:
                with contextlib.suppress(KeyError):
                    metrics.LAG_STATUS.remove(gone, status.name)
        self._exported_groups = groups

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every interval until ``stop`` is set; a failed sample is logged and counted, not fatal."""
        while not stop.is_set():
            try:
                await self.sample()
            except Exception:
                log.exception("lag sample failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.lag_sample_interval_s)

    def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise RuntimeError("LagMonitor is not started")
        return self._admin

    def _offsets_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("LagMonitor is not started")
        return self._consumer
