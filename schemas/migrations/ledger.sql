-- The migration ledger: one row per applied migration. ReplacingMergeTree so that two
-- processes migrating at the same moment leave one row per version, not two.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    UInt32,
    name       String,
    checksum   UInt64,
    applied_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY version;
