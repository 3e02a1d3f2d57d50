-- Every stored position, as the processors enriched it.
-- Times are Int64 epoch milliseconds: ClickHouse 18.16 has no DateTime64.
-- One row per (device_id, fix_time_ms): a retried or redelivered copy of a position collapses
-- on merge, and readers that must not see copies use FINAL.
CREATE TABLE IF NOT EXISTS positions (
    event_id        String,
    device_id       String,
    fix_time_ms     Int64,
    received_at_ms  Int64,
    lat             Float64,
    lon             Float64,
    speed_mps       Nullable(Float64),
    speed_derived   UInt8,
    heading_deg     Nullable(Float64),
    altitude_m      Nullable(Float64),
    accuracy_m      Nullable(Float64),
    satellites      Nullable(UInt8),
    ignition        Nullable(UInt8),
    odometer_m      Nullable(Float64),
    battery_pct     Nullable(Float64),
    attributes      String,
    prev_fix_ms     Nullable(Int64),
    distance_m      Nullable(Float64),
    kafka_partition Int32,
    kafka_offset    Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(fix_time_ms, 1000)))
ORDER BY (device_id, fix_time_ms);
