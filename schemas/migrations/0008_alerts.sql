-- Alert rules, managed through the API: every change is a new version; deleted = 1 removes.
-- `kind` is overspeed, idle or dwell; `speed_mps` is used by overspeed only; `duration_ms` is how
-- long the condition must hold. Empty `device_id`, `fleet` or `fence_id` scope nothing; a dwell
-- rule always has a fence.
CREATE TABLE IF NOT EXISTS alert_rules (
    rule_id       String,
    version       UInt64,
    deleted       UInt8,
    kind          String,
    speed_mps     Float64,
    duration_ms   Int64,
    device_id     String,
    fleet         String,
    fence_id      String,
    updated_at_ms Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY rule_id;

-- Alerts the processors fired, one per episode of a rule's condition (alert_id is
-- {device_id}|{rule_id}|{started_ms}); the copy with the highest version holds, and
-- retracted = 1 marks one a late fix withdrew.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id        String,
    rule_id         String,
    kind            String,
    device_id       String,
    fence_id        String,
    started_ms      Int64,
    alert_time_ms   Int64,
    duration_ms     Int64,
    speed_mps       Nullable(Float64),
    lat             Float64,
    lon             Float64,
    kafka_partition Int32,
    kafka_offset    Int64,
    version         UInt64,
    retracted       UInt8
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(started_ms, 1000)))
ORDER BY (device_id, rule_id, started_ms);
