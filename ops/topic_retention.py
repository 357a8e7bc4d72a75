"""Each watched topic's ``retention.ms`` as a gauge, so an alert can compare time lag with retention.

A group whose time lag approaches its topic's retention is about to lose events unread: the broker deletes
a segment once its newest record is older than ``retention.ms``, whether or not anyone consumed it. The lag
monitor already knows every topic its groups read; this module reads their retention from the broker (an
admin ``DescribeConfigs``) at most every ``refresh_s`` seconds — retention changes rarely — and exports
``csync_topic_retention_seconds{topic}``. Compacted topics and ``retention.ms=-1`` (keep forever) export
nothing: nothing is lost unread there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from csync import metrics

log = logging.getLogger(__name__)


def retention_seconds(configs: dict[str, str]) -> float | None:
    """Seconds after which a topic's records may be deleted unread; ``None`` when they never are."""
    if "delete" not in configs.get("cleanup.policy", "delete").split(","):
        return None
    try:
        ms = int(configs.get("retention.ms", "-1"))
    except ValueError:
        return None
    return ms / 1000 if ms > 0 else None


class TopicRetention:
    """Exports ``csync_topic_retention_seconds`` for the topics it is given, refreshed slowly."""

    def __init__(self, refresh_s: float = 300.0) -> None:
        self.refresh_s = refresh_s
        self._read_at: dict[str, float] = {}
        self._exported: set[str] = set()

    async def refresh(self, admin: AIOKafkaAdminClient, topics: Iterable[str], now: float) -> None:
        """Read the retention of the topics not read for ``refresh_s``; drop topics no longer given."""
        wanted = set(topics)
        due = sorted(
            t for t in wanted if now - self._read_at.get(t, float("-inf")) >= self.refresh_s
        )
        if due:
            try:
                found = await _describe(admin, due)
            except Exception as exc:  # an extra: lag export goes on without it
                log.warning("could not read topic retention: %s", type(exc).__name__)
                found = None
            if found is not None:
                for topic in due:
                    self._read_at[topic] = now
                    self._export(topic, retention_seconds(found.get(topic, {})))
        for gone in self._exported - wanted:
            self._export(gone, None)
            self._read_at.pop(gone, None)

    def _export(self, topic: str, seconds: float | None) -> None:
        if seconds is None:
            with contextlib.suppress(KeyError):
                metrics.TOPIC_RETENTION.remove(topic)
            self._exported.discard(topic)
            return
        metrics.TOPIC_RETENTION.labels(topic).set(seconds)
        self._exported.add(topic)


async def _describe(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    responses: list[Any] = await admin.describe_configs(resources)
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            error, _msg, _type, name, entries = resource[:5]
            if not error:
                configs[name] = {entry[0]: entry[1] for entry in entries}
    return configs
