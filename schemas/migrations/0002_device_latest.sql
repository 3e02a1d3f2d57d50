-- The latest fix of every device, kept current by a materialized view over positions.
-- ReplacingMergeTree(fix_time_ms) keeps the row with the newest fix time, so a late or
-- out-of-order position never replaces a newer one.
CREATE TABLE IF NOT EXISTS device_latest (
    device_id      String,
    fix_time_ms    Int64,
    received_at_ms Int64,
    lat            Float64,
    lon            Float64,
    speed_mps      Nullable(Float64),
    heading_deg    Nullable(Float64)
) ENGINE = ReplacingMergeTree(fix_time_ms)
ORDER BY device_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS device_latest_mv TO device_latest AS
SELECT device_id, fix_time_ms, received_at_ms, lat, lon, speed_mps, heading_deg
FROM positions;
