-- One row per batch the processors wrote, for the dashboard's positions per minute and
-- ingest-to-store lag (from the time ingest received a position to the time ClickHouse had it).
-- Operations figures, not history: a batch retried after a failure counts again.
CREATE TABLE IF NOT EXISTS pipeline_stats (
    written_at_ms Int64,
    positions     UInt64,
    lag_ms_sum    Int64,
    lag_ms_max    Int64
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(written_at_ms, 1000)))
ORDER BY written_at_ms;
