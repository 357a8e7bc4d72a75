"""The running lag exporter's view, read back from its ``/metrics`` for ``csync lag``.

A one-shot ``csync lag`` watches the groups for a second, far too short for Burrow's rules (see
:mod:`ops.lag`, "Evidence"); ``csync lag serve`` has watched them for its whole window. So when an exporter
answers, ``csync lag`` prints the exporter's view instead of guessing. The table is rebuilt from the gauges the
exporter serves anyway (:mod:`csync.metrics`): per partition the offset lag, time lag and committed offset, per
topic partition the end offset, per group the status. The exporter exports no per-partition status, so every
row of a group shows the group's status.

Only an answer that is a lag exporter's counts: one with at least one successful sample
(``csync_lag_samples_total{outcome="ok"}``). Every other process serves the same metric families, empty.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from ops.lag import Status
from ops.lag_monitor import GroupLag, PartitionLag

_Key = tuple[str, str, int]  # group, topic, partition


def fetch_exporter_view(url: str, timeout_s: float = 2.0) -> list[GroupLag] | None:
    """The exporter's groups at ``url`` (its ``/metrics``); ``None`` if nothing, or no exporter, answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - an operator's URL
            text = resp.read().decode("utf-8", errors="replace")
    except (OSError, urllib.error.URLError, ValueError):
        return None
    try:
        return parse_exporter_metrics(text)
    except ValueError:
        return None  # not the Prometheus text format: not our exporter


def parse_exporter_metrics(text: str) -> list[GroupLag] | None:
    """The groups in an exporter's ``/metrics`` text; ``None`` unless it is a lag exporter's (see above)."""
    per_partition: dict[str, dict[_Key, float]] = defaultdict(dict)
    ends: dict[tuple[str, int], int] = {}
    statuses: dict[str, Status] = {}
    samples_ok = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "csync_lag_samples_total" and labels.get("outcome") == "ok":
                samples_ok = value
            elif sample.name == "csync_end_offset":
                ends[(labels["topic"], int(labels["partition"]))] = int(value)
            elif sample.name == "csync_lag_group_status" and value == 1:
                if labels["status"] in Status.__members__:
                    statuses[labels["group"]] = Status[labels["status"]]
            elif sample.name in (
                "csync_lag_offsets",
                "csync_lag_seconds",
                "csync_committed_offset",
            ):
                key = (labels["group"], labels["topic"], int(labels["partition"]))
                per_partition[sample.name][key] = value
    if samples_ok <= 0:
        return None
    return [_group(g, statuses[g], per_partition, ends) for g in sorted(statuses)]


def _group(
    group: str,
    status: Status,
    per_partition: dict[str, dict[_Key, float]],
    ends: dict[tuple[str, int], int],
) -> GroupLag:
    lags, seconds = per_partition["csync_lag_offsets"], per_partition["csync_lag_seconds"]
    committed = per_partition["csync_committed_offset"]
    rows = []
    for key in sorted(k for k in lags if k[0] == group):
        _, topic, partition = key
        rows.append(
            PartitionLag(
                topic=topic,
                partition=partition,
                end_offset=ends.get((topic, partition), 0),
                committed=int(committed[key]) if key in committed else None,
                lag=int(lags[key]),
                time_lag_s=seconds.get(key),
                status=status,
            )
        )
    return GroupLag(group, "-", 0, tuple(rows), status)
