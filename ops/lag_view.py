"""How ``csync lag`` shows lag: its table, and the running lag exporter's view read back from ``/metrics``.

A one-shot ``csync lag`` watches the groups for a second, far too short for Burrow's rules (see
:mod:`ops.lag`, "Evidence"); ``csync lag serve`` has watched them for its whole window. So when an exporter
answers, ``csync lag`` prints the exporter's view instead of guessing. The table is rebuilt from the gauges the
exporter serves anyway (:mod:`csync.metrics`): per partition the offset lag, time lag and committed offset, per
topic partition the end offset, per group the status. The exporter exports no per-partition status, so a
partition with lag shows its group's status, and one with no lag OK (Burrow's rule 1 needs nothing more).

Only an answer that is a lag exporter's counts: one with at least one successful sample
(``csync_lag_samples_total{outcome="ok"}``). Every other process serves the same metric families, empty.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

from ops.lag import Status, group_status
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
                status=status if lags[key] else Status.OK,
            )
        )
    return GroupLag(group, "-", 0, tuple(rows), status)


NA_HINT = "sample longer with --watch"


def status_text(status: Status) -> str:
    """How the table prints a status (``NA`` as ``n/a``)."""
    return "n/a" if status is Status.NA else status.name


def format_table(report: Sequence[GroupLag], na_hint: str = NA_HINT) -> str:
    """``csync lag``'s table: one row per group and topic; a line explaining ``n/a`` when one shows."""
    header = ("GROUP", "TOPIC", "PARTITIONS", "LAG", "MAX-TIME-LAG-S", "STATUS")
    rows: list[tuple[str, ...]] = []
    for g in report:
        if not g.partitions:
            rows.append(
                (
                    g.group,
                    "-",
                    "0",
                    "-",
                    "-",
                    status_text(g.status) + (f" ({g.error})" if g.error else ""),
                )
            )
        for topic in g.topics():
            parts = [p for p in g.partitions if p.topic == topic]
            lags = [p.lag for p in parts if p.lag is not None]
            times = [p.time_lag_s for p in parts if p.time_lag_s is not None]
            rows.append(
                (
                    g.group,
                    topic,
                    str(len(parts)),
                    str(sum(lags)) if lags else "-",
                    f"{max(times):.1f}" if times else "-",
                    status_text(group_status(p.status for p in parts)),
                )
            )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in (header, *rows)
    ]
    if any(r[-1] == "n/a" for r in rows):
        lines.append(f"n/a — {na_hint} (too few samples yet for Burrow's rules)")
    return "\n".join(lines)
