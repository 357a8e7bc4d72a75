"""What the demo dashboard shows, read from the running pipeline the way an operator, an analyst or a teacher
would read it: Prometheus ``/metrics`` of the processes, the analysts' public view (through the ClickHouse sink's
read endpoint), the teacher API with a teacher's token, and one aggregate count from Redis.

Every probe has a short timeout and returns ``None`` (or an empty value) instead of raising: a process that is
still starting, or has died, shows up as missing data on the dashboard, never as a crashed demo.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_S = 2.0
Samples = dict[str, list[tuple[dict[str, str], float]]]
SENT_LINE = re.compile(rb"sent (\d+) events \((\d+) invalid\)")


def scrape(port: int, timeout_s: float = TIMEOUT_S) -> Samples | None:
    """The samples of ``http://127.0.0.1:{port}/metrics`` by sample name, or ``None`` if it does not answer."""
    try:
        with urllib.request.urlopen(  # noqa: S310 - loopback http
            f"http://127.0.0.1:{port}/metrics", timeout=timeout_s
        ) as response:
            text = response.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    samples: Samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    except ValueError:
        return None
    return samples


def total(scrapes: Iterable[Samples | None], name: str, **match: str) -> float | None:
    """The sum of ``name`` over the scrapes (and label values ``match``); ``None`` if nobody has it."""
    found = False
    value = 0.0
    for samples in scrapes:
        if samples is None or name not in samples:
            continue
        for labels, v in samples[name]:
            if all(labels.get(k) == want for k, want in match.items()):
                found = True
                value += v
    return value if found else None


def by_label(scrapes: Iterable[Samples | None], name: str, label: str) -> dict[str, float]:
    """``name`` summed over the scrapes, per value of ``label``."""
    out: dict[str, float] = {}
    for samples in scrapes:
        for labels, v in (samples or {}).get(name, []):
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


@dataclass(frozen=True)
class GroupLag:
    """Consumer lag of one group as the lag monitor reports it."""

    group: str
    offsets: int
    seconds: float
    status: str


def lag_of(samples: Samples | None) -> list[GroupLag]:
    """Per group: the offset lag summed over its partitions, the worst time lag, and its Burrow status."""
    if samples is None:
        return []
    offsets: dict[str, float] = {}
    seconds: dict[str, float] = {}
    status: dict[str, str] = {}
    for labels, v in samples.get("csync_lag_offsets", []):
        offsets[labels["group"]] = offsets.get(labels["group"], 0.0) + v
    for labels, v in samples.get("csync_lag_seconds", []):
        seconds[labels["group"]] = max(seconds.get(labels["group"], 0.0), v)
    for labels, v in samples.get("csync_lag_group_status", []):
        if v == 1:
            status[labels["group"]] = labels["status"]
    groups = sorted(set(offsets) | set(status))
    return [
        GroupLag(g, int(offsets.get(g, 0)), seconds.get(g, 0.0), status.get(g, "?")) for g in groups
    ]


def simulator_sent(log_path: Path) -> int | None:
    """Events the simulator has sent so far, from the last progress line of its log."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            tail = fh.read()
    except OSError:
        return None
    matches = SENT_LINE.findall(tail)
    return int(matches[-1][0]) if matches else None


def usage_view(port: int, today: dt.date, timeout_s: float = 5.0) -> list[dict[str, Any]] | None:
    """Rows of the analysts' view ``usage.app_daily_public`` for yesterday and today, via the sink's endpoint.

    Yesterday is included because a compressed school day placed before "now" may start before midnight UTC.
    """
    from sinks.usage_read import fetch_from_sink

    try:
        return fetch_from_sink(port, today - dt.timedelta(days=1), today, None, timeout_s=timeout_s)
    except (OSError, ValueError, KeyError):
        return None


@dataclass(frozen=True)
class UsageTotals:
    """The public view summed over its days: seconds and students per app and per web site."""

    apps: dict[str, tuple[float, int]] = field(default_factory=dict)
    sites: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(s for s, _ in self.apps.values())


def usage_totals(rows: list[dict[str, Any]]) -> UsageTotals:
    """Per app (sub-apps summed; students = the largest cell's, a lower bound) and per site (app ``web``)."""
    apps: dict[str, tuple[float, int]] = {}
    sites: dict[str, tuple[float, int]] = {}
    for row in rows:
        seconds, students = float(row["active_seconds"]), int(row["students"])
        app = str(row["app"])
        old = apps.get(app, (0.0, 0))
        apps[app] = (old[0] + seconds, max(old[1], students))
        if app == "web":
            site = str(row["sub_app"])
            old = sites.get(site, (0.0, 0))
            sites[site] = (old[0] + seconds, max(old[1], students))
    return UsageTotals(apps, sites)


def teacher_view(port: int, token: str, class_id: str) -> list[dict[str, Any]] | None:
    """A class as its teacher sees it (``name``, ``online``, ``sub_app`` per student) from the teacher API."""
    request = urllib.request.Request(  # noqa: S310 - loopback http
        f"http://127.0.0.1:{port}/v1/classes/{class_id}/presence",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            students: list[dict[str, Any]] = json.loads(response.read())["students"]
            return students
    except (OSError, ValueError, KeyError):
        return None


def online_by_district(redis_url: str, prefix: str) -> dict[str, int] | None:
    """Students whose presence hash says online, counted per district (a count; no id leaves this function)."""
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(redis_url, socket_timeout=TIMEOUT_S)
    try:
        counts: dict[str, int] = {}
        keys = list(client.scan_iter(match=f"{prefix}:presence:*", count=2000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, "online")
        for key, online in zip(keys, pipe.execute(), strict=True):
            district = key.decode().split(":")[2]
            counts[district] = counts.get(district, 0) + (1 if online == b"1" else 0)
        return counts
    except (RedisError, OSError):
        return None
    finally:
        with contextlib.suppress(RedisError, OSError):
            client.close()


def http_ok(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    """True when ``url`` answers with a status below 500 (an up-but-unauthorised API counts as up)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False
