"""Every Prometheus metric of the pipeline, in one place.

Each metric has a one-line comment saying what an operator reads from it. Labels never carry a student, device
or school identifier; ``district`` appears only on aggregate counts.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- input and validation
# Raw records and events read, by topic: is input arriving at all?
EVENTS_CONSUMED = Counter(
    "csync_events_consumed_total", "Records read from Kafka (an envelope is one record)", ["topic"]
)
# Events that passed validation: the useful throughput.
EVENTS_VALID = Counter("csync_events_valid_total", "Events that passed validation")
# Events rejected, by machine-readable reason: a jump in one reason points at one broken producer.
EVENTS_INVALID = Counter("csync_events_invalid_total", "Events rejected by validation", ["reason"])
# Fields removed by minimisation, by field name: which devices send data we must not keep.
FIELDS_DROPPED = Counter("csync_fields_dropped_total", "Fields dropped by minimisation", ["field"])
# Records written to the DLQ: should stay near zero; alerts fire on its rate.
DLQ_RECORDS = Counter("csync_dlq_records_total", "Records produced to the DLQ", ["reason"])
# Produce requests this process sent again (leader moved, broker down): bursts during broker failovers are
# expected; a steady rate means a broker or the network keeps failing.
PRODUCER_RETRIES = Counter("csync_producer_retries_total", "Kafka produce requests retried")

# --- sinks (label ``sink`` is "clickhouse" or "redis")
# Batches written: flat while input arrives means the sink is stuck (see failures/retries).
SINK_BATCHES = Counter("csync_sink_batches_total", "Batches written by a sink", ["sink"])
# Rows (ClickHouse) or presence changes (Redis) written: the sink's useful throughput.
SINK_ROWS = Counter("csync_sink_rows_total", "Rows or changes written by a sink", ["sink"])
# Failed batch writes by kind (transient = retried, permanent = the sink stopped): any permanent one pages.
SINK_FAILURES = Counter("csync_sink_failures_total", "Failed batch writes", ["sink", "kind"])
# Retries of a batch after a transient failure: a rising rate means the backend is down or slow.
SINK_RETRIES = Counter("csync_sink_retries_total", "Batch write retries", ["sink"])
# Seconds to write one batch (one insert / one pipeline): the backend's latency as the sink sees it.
SINK_BATCH_SECONDS = Histogram(
    "csync_sink_batch_seconds",
    "Time to write one batch",
    ["sink"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# 1 while the sink's last write succeeded, 0 while it is retrying: the backend as the sink sees it.
SINK_BACKEND_UP = Gauge("csync_sink_backend_up", "Last batch write succeeded", ["sink"])
# Replayed usage-cells records skipped because ClickHouse already holds them: non-zero after crashes only.
SINK_REPLAY_SKIPPED = Counter(
    "csync_sink_replay_skipped_total", "Replayed records already written, skipped", ["sink"]
)
# Presence changes older than what Redis holds, not applied: replays and reordering, never data loss.
SINK_STALE_CHANGES = Counter(
    "csync_sink_stale_changes_total", "Presence changes older than Redis state, not applied"
)

# --- stream workers (streams/)
# Events dropped as later than ALLOWED_LATENESS_S behind their device: a high rate means devices/clocks lag.
LATE_EVENTS = Counter("csync_late_events_total", "Events dropped as late (CONTRACT §5)")
# Presence changes emitted by workers: roughly the rate of teacher-visible changes.
PRESENCE_CHANGES = Counter("csync_presence_changes_total", "Presence changes emitted by workers")
# De-identified usage rows emitted by workers.
USAGE_ROWS = Counter("csync_usage_rows_total", "Usage rows emitted by workers")
# Events that arrived on the wrong partition and were re-routed: a misconfigured producer.
REROUTED_EVENTS = Counter("csync_rerouted_events_total", "Misrouted events re-routed")
# Students online now, per district (a count only): the teacher view's population; 0 in school hours = an outage.
ONLINE_STUDENTS = Gauge("csync_online_students", "Students online now (count)", ["district"])

# --- collector (producers/)
# HTTP requests of devices by status code: 4xx = a broken device build, 5xx/429 = we turned devices away.
COLLECTOR_REQUESTS = Counter(
    "csync_collector_requests_total", "Collector HTTP requests", ["status"]
)
# Events the collector accepted (produced to Kafka) or rejected (outcome label): device-side input health.
COLLECTOR_EVENTS = Counter("csync_collector_events_total", "Collector events", ["outcome"])

# --- consumer lag (ops/lag_monitor.py; labels are group/topic/partition, never a person)
# Records a group still has to read on a partition (end offset − committed offset, as kafka-consumer-groups).
LAG_OFFSETS = Gauge(
    "csync_lag_offsets", "Offset lag per partition", ["group", "topic", "partition"]
)
# Seconds the group is behind on a partition (kafka-lag-exporter interpolation): staleness a teacher sees.
LAG_SECONDS = Gauge(
    "csync_lag_seconds", "Estimated time lag per partition", ["group", "topic", "partition"]
)
# Committed offset per partition: its rate is the group's consumption throughput.
COMMITTED_OFFSET = Gauge(
    "csync_committed_offset", "Committed offset per partition", ["group", "topic", "partition"]
)
# Partition end offset (high watermark): its rate is the produce throughput of a topic.
END_OFFSET = Gauge("csync_end_offset", "Partition end offset", ["topic", "partition"])
# 1 for the group's current Burrow status (OK/WARN/STALL/STOP/REWIND/ERR), 0 for the others: alert on STALL/STOP.
LAG_STATUS = Gauge("csync_lag_group_status", "Burrow-style status of a group", ["group", "status"])
# Samples of the lag monitor by outcome (ok/error): errors mean the monitor cannot read the broker.
LAG_SAMPLES = Counter("csync_lag_samples_total", "Lag monitor samples", ["outcome"])
# retention.ms of each topic our groups read, in seconds: time lag near it means events deleted unread.
TOPIC_RETENTION = Gauge(
    "csync_topic_retention_seconds", "Retention of a topic our groups read", ["topic"]
)

# --- end-to-end probe (ops/probe.py: a synthetic student of the reserved probe district)
# Seconds from producing a probe event to seeing it in Redis: the whole path devices → teachers, measured.
PROBE_LATENCY = Histogram(
    "csync_probe_latency_seconds",
    "Time from producing a probe event to its presence in Redis",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60),
)
# 1 while the last probe event reached Redis within the probe timeout, 0 otherwise: the path works or not.
PROBE_UP = Gauge("csync_probe_up", "Last probe event reached Redis within the timeout")
# Probes that failed, by stage (produce = Kafka refused it, timeout = never seen in Redis in time).
PROBE_FAILURES = Counter("csync_probe_failures_total", "Failed probes", ["stage"])
