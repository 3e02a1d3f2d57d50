-- The device registry, managed through the API: every change is a new version; deleted = 1
-- removes. Processors poll it and stamp name, fleet and type onto each position.
CREATE TABLE IF NOT EXISTS devices (
    device_id     String,
    version       UInt64,
    deleted       UInt8,
    name          String,
    fleet         String,
    device_type   String,
    updated_at_ms Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY device_id;

ALTER TABLE positions ADD COLUMN device_name String DEFAULT '';
ALTER TABLE positions ADD COLUMN fleet String DEFAULT '';
ALTER TABLE positions ADD COLUMN device_type String DEFAULT '';
