-- Enrichment columns written by the processors.
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the migrator skips an ADD COLUMN whose
-- column already exists, which keeps a re-run after a crash mid-migration safe.
ALTER TABLE positions ADD COLUMN heading_derived UInt8 DEFAULT 0;
ALTER TABLE positions ADD COLUMN distance_total_m Float64 DEFAULT 0;
ALTER TABLE positions ADD COLUMN moving UInt8 DEFAULT 0;
ALTER TABLE positions ADD COLUMN h3_cell UInt64 DEFAULT 0;
ALTER TABLE positions ADD COLUMN fence_ids Array(String);

-- Enter and exit events. event_id is derived from (device, fence, type, time), and a redelivered
-- event collapses on the sorting key.
CREATE TABLE IF NOT EXISTS geofence_events (
    event_id        String,
    device_id       String,
    fence_id        String,
    event_type      Enum8('enter' = 1, 'exit' = 2),
    event_time_ms   Int64,
    dwell_ms        Nullable(Int64),
    fix_time_ms     Int64,
    lat             Float64,
    lon             Float64,
    kafka_partition Int32,
    kafka_offset    Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(event_time_ms, 1000)))
ORDER BY (fence_id, device_id, event_time_ms, event_type);

-- Each device's processing state after the last message applied to it, with that message's
-- offset: a processor taking over a partition resumes from here and skips what it already applied.
CREATE TABLE IF NOT EXISTS processor_state (
    device_id       String,
    kafka_partition Int32,
    kafka_offset    Int64,
    state           String,
    updated_at_ms   Int64
) ENGINE = ReplacingMergeTree(kafka_offset)
ORDER BY device_id;

-- Geofences as managed through the API: every change is a new version; deleted = 1 removes.
CREATE TABLE IF NOT EXISTS geofences (
    fence_id      String,
    version       UInt64,
    deleted       UInt8,
    name          String,
    feature       String,
    updated_at_ms Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY fence_id;
