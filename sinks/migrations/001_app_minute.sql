-- CONTRACT §5: per-minute usage cells. SummingMergeTree keeps active_ms a plain UInt64 that background merges
-- add up, and merges the AggregateFunction(uniq) states as AggregatingMergeTree would. It must be given NO
-- column list: SummingMergeTree(active_ms) sums active_ms but keeps the first row's `students` state at a
-- merge, losing distinct students (test_merges_keep_every_student proves it). Readers still use
-- sum(active_ms) and uniqMerge(students) grouped by the key, because unmerged parts can hold several rows per key.
-- A row whose active_ms is 0 would be dropped by merges; the workers never emit one (no time, no cell).
-- non_replicated_deduplication_window keeps the block ids of the last inserts so a replayed batch
-- (same insert_deduplication_token) is dropped instead of added again.
CREATE TABLE IF NOT EXISTS {db}.app_minute
(
    minute DateTime('UTC'),
    app LowCardinality(String),
    sub_app String,
    active_ms UInt64,
    students AggregateFunction(uniq, UInt64)
)
ENGINE = SummingMergeTree
ORDER BY (minute, app, sub_app)
TTL minute + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Where the sink inserts: rows exactly as the usage-cells topic carries them, plus the usage-cells record they
-- came from. Null engine: nothing is stored here, the materialized views below receive every inserted block.
CREATE TABLE IF NOT EXISTS {db}.app_minute_in
(
    minute DateTime('UTC'),
    app String,
    sub_app String,
    student_token UInt64,
    active_ms UInt64,
    src_partition UInt32,
    src_offset UInt64
)
ENGINE = Null;

-- How far each partition of the usage-cells topic has been written, in the same INSERT as the rows. On a
-- partition assignment the sink skips records at or below this offset, so a replay after a crash between insert
-- and offset commit adds nothing even when it batches records differently from the first attempt.
CREATE TABLE IF NOT EXISTS {db}.sink_progress
(
    src_partition UInt32,
    last_offset SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY src_partition
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.app_minute_mv TO {db}.app_minute AS
SELECT minute, app, sub_app, sum(active_ms) AS active_ms, uniqState(student_token) AS students
FROM {db}.app_minute_in
GROUP BY minute, app, sub_app;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.sink_progress_mv TO {db}.sink_progress AS
SELECT src_partition, max(src_offset) AS last_offset
FROM {db}.app_minute_in
GROUP BY src_partition;
