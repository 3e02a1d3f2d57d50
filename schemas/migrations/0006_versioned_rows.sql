-- Versioned positions and geofence events: of several stored copies of one position (a
-- retransmitted fix, a redelivered message, a correction) or event, readers with FINAL see the
-- copy with the highest `version` (see storage/src/version.rs). `late` flags a fix stored
-- without its device's history; `retracted` an event that a later version withdrew.
--
-- ClickHouse cannot change a table's engine, so both tables are rebuilt: a new table, the rows
-- copied (version 144115188075855872 = 2 << 56, the tier of rows from before versions), then
-- swapped in by RENAME. A step marked "only if ... lacks ..." runs only while the old table
-- lacks the new column, so a re-run after a crash part-way resumes where it stopped. Stop the
-- processors of older releases before upgrading: rows they write while this runs are not copied.
-- The copies insert the blocks as they are read, one part (so one month) each: current releases
-- would otherwise squash them into blocks spanning every month of a table's history, and refuse
-- a block of more than 100 months ("Too many partitions for single INSERT block"; 18.16 has
-- neither the squashing nor the limit, nor the setting that lifts it).

-- only if positions lacks version
CREATE TABLE IF NOT EXISTS positions_0006 (
    event_id         String,
    device_id        String,
    fix_time_ms      Int64,
    received_at_ms   Int64,
    lat              Float64,
    lon              Float64,
    speed_mps        Nullable(Float64),
    speed_derived    UInt8,
    heading_deg      Nullable(Float64),
    altitude_m       Nullable(Float64),
    accuracy_m       Nullable(Float64),
    satellites       Nullable(UInt8),
    ignition         Nullable(UInt8),
    odometer_m       Nullable(Float64),
    battery_pct      Nullable(Float64),
    attributes       String,
    prev_fix_ms      Nullable(Int64),
    distance_m       Nullable(Float64),
    kafka_partition  Int32,
    kafka_offset     Int64,
    heading_derived  UInt8,
    distance_total_m Float64,
    moving           UInt8,
    h3_cell          UInt64,
    fence_ids        Array(String),
    device_name      String,
    fleet            String,
    device_type      String,
    late             UInt8,
    version          UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(fix_time_ms, 1000)))
ORDER BY (device_id, fix_time_ms);

-- only if positions lacks version
DROP TABLE IF EXISTS device_latest_mv;

-- only if positions lacks version
INSERT INTO positions_0006 (event_id, device_id, fix_time_ms, received_at_ms, lat, lon, speed_mps,
    speed_derived, heading_deg, altitude_m, accuracy_m, satellites, ignition, odometer_m, battery_pct,
    attributes, prev_fix_ms, distance_m, kafka_partition, kafka_offset, heading_derived,
    distance_total_m, moving, h3_cell, fence_ids, device_name, fleet, device_type, late, version)
SELECT event_id, device_id, fix_time_ms, received_at_ms, lat, lon, speed_mps,
    speed_derived, heading_deg, altitude_m, accuracy_m, satellites, ignition, odometer_m, battery_pct,
    attributes, prev_fix_ms, distance_m, kafka_partition, kafka_offset, heading_derived,
    distance_total_m, moving, h3_cell, fence_ids, device_name, fleet, device_type,
    toUInt8(0), toUInt64(144115188075855872)
FROM positions
SETTINGS min_insert_block_size_rows = 0, min_insert_block_size_bytes = 0;

-- only if positions lacks version
RENAME TABLE positions TO positions_before_0006, positions_0006 TO positions;

DROP TABLE IF EXISTS positions_before_0006;

CREATE MATERIALIZED VIEW IF NOT EXISTS device_latest_mv TO device_latest AS
SELECT device_id, fix_time_ms, received_at_ms, lat, lon, speed_mps, heading_deg
FROM positions;

-- only if geofence_events lacks version
CREATE TABLE IF NOT EXISTS geofence_events_0006 (
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
    kafka_offset    Int64,
    version         UInt64,
    retracted       UInt8
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(event_time_ms, 1000)))
ORDER BY (fence_id, device_id, event_time_ms, event_type);

-- only if geofence_events lacks version
INSERT INTO geofence_events_0006 (event_id, device_id, fence_id, event_type, event_time_ms, dwell_ms,
    fix_time_ms, lat, lon, kafka_partition, kafka_offset, version, retracted)
SELECT event_id, device_id, fence_id, event_type, event_time_ms, dwell_ms,
    fix_time_ms, lat, lon, kafka_partition, kafka_offset, toUInt64(144115188075855872), toUInt8(0)
FROM geofence_events
SETTINGS min_insert_block_size_rows = 0, min_insert_block_size_bytes = 0;

-- only if geofence_events lacks version
RENAME TABLE geofence_events TO geofence_events_before_0006, geofence_events_0006 TO geofence_events;

DROP TABLE IF EXISTS geofence_events_before_0006;
