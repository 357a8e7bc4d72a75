"""``csync lag`` reading the exporter's view: the table rebuilt from /metrics, and only from an exporter's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ops.lag import Status
from ops.lag_monitor import GroupLag, PartitionLag
from ops.lag_view import format_table, parse_exporter_metrics


def exposition(samples_ok: int, status: str = "OK") -> str:
    """An exporter's /metrics with the gauges of csync.metrics (a registry of its own)."""
    reg = CollectorRegistry()
    labels = ["group", "topic", "partition"]
    lag = Gauge("csync_lag_offsets", "x", labels, registry=reg)
    secs = Gauge("csync_lag_seconds", "x", labels, registry=reg)
    committed = Gauge("csync_committed_offset", "x", labels, registry=reg)
    end = Gauge("csync_end_offset", "x", ["topic", "partition"], registry=reg)
    st = Gauge("csync_lag_group_status", "x", ["group", "status"], registry=reg)
    samples = Counter("csync_lag_samples_total", "x", ["outcome"], registry=reg)
    for p, (n, s) in enumerate([(120, 0.8), (40, 1.4)]):
        # The roster topic is read to its end: no lag, whatever the group's status.
        lag.labels("csync-worker", "roster.v1", str(p)).set(0)
        committed.labels("csync-worker", "roster.v1", str(p)).set(7)
        end.labels("roster.v1", str(p)).set(7)
        lag.labels("csync-worker", "device-activity.v1", str(p)).set(n)
        secs.labels("csync-worker", "device-activity.v1", str(p)).set(s)
        committed.labels("csync-worker", "device-activity.v1", str(p)).set(1000 - n)
        end.labels("device-activity.v1", str(p)).set(1000)
    for name in Status.__members__:
        st.labels("csync-worker", name).set(1 if name == status else 0)
    if samples_ok:
        samples.labels("ok").inc(samples_ok)
    return generate_latest(reg).decode()


def test_the_exporters_view_becomes_the_same_table() -> None:
    view = parse_exporter_metrics(exposition(samples_ok=12, status="STALL"))
    assert view is not None
    (group,) = view
    assert group.group == "csync-worker" and group.status is Status.STALL
    activity = [p for p in group.partitions if p.topic == "device-activity.v1"]
    assert [(p.partition, p.lag, p.committed, p.end_offset) for p in activity] == [
        (0, 120, 880, 1000),
        (1, 40, 960, 1000),
    ]
    table = format_table(view).splitlines()
    assert table[1].split() == ["csync-worker", "device-activity.v1", "2", "160", "1.4", "STALL"]
    assert table[2].split() == ["csync-worker", "roster.v1", "2", "0", "-", "OK"]


def test_a_process_that_has_not_sampled_is_not_an_exporter() -> None:
    assert parse_exporter_metrics(exposition(samples_ok=0)) is None
    assert parse_exporter_metrics("") is None


def test_na_is_printed_with_how_to_get_a_status() -> None:
    row = PartitionLag("device-activity.v1", 0, 100, 40, 60, 0.9, Status.NA)
    table = format_table([GroupLag("csync-worker", "Stable", 2, (row,), Status.NA)])
    lines = table.splitlines()
    assert lines[1].split()[-1] == "n/a"
    assert lines[-1].startswith("n/a — sample longer with --watch")
    caught_up = PartitionLag("device-activity.v1", 0, 100, 100, 0, 0.0, Status.OK)
    ok = format_table([GroupLag("csync-worker", "Stable", 2, (caught_up,), Status.OK)])
    assert "n/a" not in ok
