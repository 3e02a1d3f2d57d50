-- Webhooks, managed through the API with admin tokens: every change is a new version; deleted = 1
-- removes. `secret` signs each delivery (HMAC-SHA256) and is never returned by the API. Empty
-- `device_id`, `fence_id` or `fleet` match every event.
CREATE TABLE IF NOT EXISTS webhooks (
    webhook_id    String,
    version       UInt64,
    deleted       UInt8,
    url           String,
    secret        String,
    kinds         Array(String),
    device_id     String,
    fence_id      String,
    fleet         String,
    created_at_ms Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY webhook_id;

-- The delivery log: a row when a delivery first fails, when it succeeds and when it is given up
-- (dead); the newest row of a delivery (by last_attempt_ms) is its state.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    webhook_id       String,
    delivery_id      String,
    event_id         String,
    device_id        String,
    status           String,
    attempts         UInt32,
    last_status      UInt16,
    last_error       String,
    first_attempt_ms Int64,
    last_attempt_ms  Int64
) ENGINE = ReplacingMergeTree(last_attempt_ms)
ORDER BY (webhook_id, delivery_id);
