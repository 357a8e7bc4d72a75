"""The Kafka topics of CONTRACT §1 and our internal ones (the workers' state log and day keys),
created through aiokafka's admin client.

Partitions, retention and compaction come from settings; ``create_topics`` is idempotent and reports topics
that already exist with other settings instead of silently accepting them.

Creating topics is a provisioning step (``csync topics create``, the Kubernetes setup Job, ``make up``), run
before the processes: the workers and sinks only :func:`check_topics` at start and stop with one line naming
that command when a topic is missing or differs (partitions, cleanup policy). They never create or alter a
topic themselves, so processes started together cannot race each other's creation, and a process of an
older release cannot silently re-create a topic with its own settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from csync.kafka_client import check_credentials, kafka_options
from csync.settings import Settings
from schemas.clock import DAY_MS, HOUR_MS


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as we want it."""

    name: str
    partitions: int
    config: dict[str, str]
    purpose: str


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline needs, with its retention (privacy policy: strict retention limits)."""
    p = settings.partitions
    # Retention acts on closed segments only: segment.ms bounds how long past retention.ms data can stay
    # on disk, and max.compaction.lag.ms bounds how long a tombstoned (purged) roster name can survive.
    hour, day = HOUR_MS, DAY_MS
    return _replicated(settings, [
        TopicSpec(
            settings.topic_activity,
            p,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(settings.retention_activity_ms),
                "segment.ms": str(min(day, settings.retention_activity_ms)),
            },
            "raw device activity (events and envelopes)",
        ),
        TopicSpec(
            settings.topic_roster,
            p,
            # Kept until a tombstone (roster removal or district purge); tombstones go after a day.
            {
                "cleanup.policy": "compact",
                "retention.ms": "-1",
                "delete.retention.ms": str(day),
                "segment.ms": str(day),
                "max.compaction.lag.ms": str(day),
            },
            "roster records, compacted",
        ),
        TopicSpec(
            settings.topic_dlq,
            p,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(settings.retention_dlq_ms),
                "segment.ms": str(min(hour, settings.retention_dlq_ms)),
            },
            "rejected input with reasons",
        ),
        TopicSpec(
            settings.topic_presence,
            p,
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(settings.retention_presence_ms),
                "delete.retention.ms": str(hour),
                "segment.ms": str(hour),
                "max.compaction.lag.ms": str(day),
            },
            "internal: presence changes for the Redis sink",
        ),
        TopicSpec(
            settings.topic_usage_cells,
            p,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(settings.retention_usage_cells_ms),
                "segment.ms": str(min(day, settings.retention_usage_cells_ms)),
            },
            "internal: de-identified usage rows for the ClickHouse sink",
        ),
    ])  # fmt: skip


def worker_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The public topics plus the workers' internal ones (state log, day keys)."""
    return _replicated(settings, [
        *topic_specs(settings),
        TopicSpec(
            settings.topic_worker_state,
            settings.partitions,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(DAY_MS),
                "max.message.bytes": str(64 * 1024 * 1024),
            },
            "internal: per-partition intents and snapshots of the stream workers",
        ),
        TopicSpec(
            settings.topic_day_keys,
            1,
            {"cleanup.policy": "compact", "delete.retention.ms": "60000"},
            "internal: daily student-token keys, destroyed after the day closes",
        ),
    ])  # fmt: skip


def _replicated(settings: Settings, specs: list[TopicSpec]) -> list[TopicSpec]:
    """With ``REPLICATION_FACTOR`` > 1, every spec also wants ``min.insync.replicas`` (so ``create_topics``
    sets it and the comparison checks it); a single broker keeps the specs as they were."""
    if settings.replication_factor == 1:
        return specs
    isr = {"min.insync.replicas": str(settings.min_insync_replicas)}
    return [TopicSpec(s.name, s.partitions, {**s.config, **isr}, s.purpose) for s in specs]


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What ``create_topics`` did for one topic."""

    name: str
    action: str  # "created" | "exists" | "differs"
    detail: str = ""


class TopicsNotProvisioned(RuntimeError):
    """A topic a process needs is missing or differs from settings; the message says what and
    which command provisions it."""


# What makes a process's topic unusable: another partition count breaks partition p's
# co-location with its state; another cleanup policy deletes a compacted roster or compacts raw
# input. Retention and segment sizes differing is for the operator's report, not a reason to stop.
_ESSENTIAL = ("cleanup.policy",)


@contextlib.asynccontextmanager
async def _admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client with the security settings, closed on the way out."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=15000,
        **kafka_options(settings),
    )
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def check_topics(settings: Settings, specs: list[TopicSpec]) -> None:
    """Return when every topic of ``specs`` exists with its partition count and cleanup policy;
    else raise :class:`TopicsNotProvisioned` (one line naming the command to run)."""
    await check_credentials(settings)  # a rejected login: its own clear error, at once
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        missing = [s.name for s in specs if s.name not in existing]
        present = [s for s in specs if s.name in existing]
        reports = await _compare(admin, present, _ESSENTIAL) if present else []
    problems = [f"missing {name}" for name in missing]
    problems += [f"{r.name} differs ({r.detail})" for r in reports if r.action == "differs"]
    if problems:
        raise TopicsNotProvisioned(
            f"Kafka topics not provisioned: {'; '.join(problems)} — run `csync topics create` "
            "(creates missing topics; `--alter` sets configs; partition counts change only by hand)"
        )


async def create_topics(
    settings: Settings, specs: list[TopicSpec] | None = None
) -> list[TopicReport]:
    """Create missing topics (all of them unless ``specs`` says which); for existing ones compare
    partitions and configs and say what differs."""
    await check_credentials(settings)
    specs = worker_topic_specs(settings) if specs is None else specs
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        reports: list[TopicReport] = []
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=settings.replication_factor,
                    topic_configs=s.config,
                )
                for s in missing
            ]
            # Created concurrently by another process: fine, it is listed as created like the others.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            reports += [TopicReport(s.name, "created", s.purpose) for s in missing]
            await _wait_visible(admin, {s.name for s in missing})
        present = [s for s in specs if s.name in existing]
        if present:
            reports += await _compare(admin, present)
        return reports


async def apply_topic_configs(settings: Settings, names: list[str]) -> None:
    """Set the configs of existing topics to their specs (partitions are never changed here).

    AlterConfigs replaces a topic's whole non-default config, so the spec's full set is sent.
    """
    specs = {s.name: s for s in worker_topic_specs(settings) if s.name in names}
    async with _admin(settings) as admin:
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.config)
            for spec in specs.values()
        ]
        responses = await admin.alter_configs(resources)
        errors = [r[:2] for resp in responses for r in resp.resources if r[0]]
        if errors:
            raise RuntimeError(f"AlterConfigs failed: {errors}")
        # The broker applies config changes through its metadata log: wait until they read back.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while loop.time() < deadline:
            if all(r.action == "exists" for r in await _compare(admin, list(specs.values()))):
                return
            await asyncio.sleep(0.2)


async def _wait_visible(admin: AIOKafkaAdminClient, names: set[str], timeout_s: float = 15) -> None:
    """Return once the broker lists the new topics, so the next client never races their creation."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not names <= set(await admin.list_topics()):
        if loop.time() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s}s: {sorted(names)}")
        await asyncio.sleep(0.1)


async def _compare(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], keys: tuple[str, ...] | None = None
) -> list[TopicReport]:
    """Partitions and configs (all of the spec's, or only ``keys``) of existing topics vs specs."""
    described = await admin.describe_topics([s.name for s in specs])
    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
    responses = await admin.describe_configs(resources)
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            _err, _msg, _type, name, entries = resource[:5]
            configs[name] = {entry[0]: entry[1] for entry in entries}
    reports = []
    for spec in specs:
        diffs = []
        if partitions.get(spec.name) != spec.partitions:
            diffs.append(f"partitions {partitions.get(spec.name)} != {spec.partitions}")
        for key, want in spec.config.items():
            if keys is not None and key not in keys:
                continue
            have = configs.get(spec.name, {}).get(key)
            if have != want:
                diffs.append(f"{key}={have} (want {want})")
        if diffs:
            reports.append(TopicReport(spec.name, "differs", "; ".join(diffs)))
        else:
            reports.append(TopicReport(spec.name, "exists"))
    return reports
