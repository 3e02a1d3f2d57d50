//! Every SQL statement fleetstream runs, apart from the DDL files under `schemas/migrations/`.
//!
//! Rules, because the same text runs on ClickHouse 18.16 and on current ClickHouse:
//! values are bound with `?` (client-side escaping; server-side `{name:Type}` parameters do not
//! exist on 18.16); no DateTime64, window functions, TTL or Map; readers that must not see
//! duplicate copies of a row use `FINAL`.

/// Tables the row types are written to or read from.
pub const POSITIONS: &str = "positions";
pub const DEVICE_LATEST: &str = "device_latest";
pub const LEDGER: &str = "schema_migrations";
pub const GEOFENCE_EVENTS: &str = "geofence_events";
pub const PROCESSOR_STATE: &str = "processor_state";
pub const GEOFENCES: &str = "geofences";
pub const DEVICES: &str = "devices";
pub const WEBHOOKS: &str = "webhooks";
pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries";
pub const PIPELINE_STATS: &str = "pipeline_stats";
pub const ALERT_RULES: &str = "alert_rules";
pub const ALERTS: &str = "alerts";

pub const SERVER_VERSION: &str = "SELECT version()";

/// The database name (and the cluster's) is checked by [`crate::migrate::valid_database_name`]
/// before this runs.
pub fn create_database(name: &str, cluster: Option<&str>) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {name}{}", on_cluster(cluster))
}

/// ` ON CLUSTER <name>` on a cluster, else nothing.
pub fn on_cluster(cluster: Option<&str>) -> String {
    cluster.map(|c| format!(" ON CLUSTER {c}")).unwrap_or_default()
}

// On a cluster (`migrate::cluster`): the tables of this database on the server we are connected
// to, and the DDL of the Distributed tables. Names are identifiers checked before.

pub const CLUSTER_TABLES: &str =
    "SELECT name, engine, engine_full, sorting_key FROM system.tables WHERE database = currentDatabase()";
pub const CLUSTER_COLUMNS: &str = "SELECT table, name, type FROM system.columns WHERE database = currentDatabase()";

pub fn drop_on_cluster(table: &str, cluster: &str, database: &str) -> String {
    format!("DROP TABLE IF EXISTS {database}.{table} ON CLUSTER {cluster}")
}

/// The Distributed table `table` over `local` on every shard, sharded by `cityHash64(key)`.
/// (`AS` names the database: 18.16 runs the statement on the other servers without one.)
pub fn create_distributed(table: &str, local: &str, cluster: &str, database: &str, key: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} AS {database}.{local} \
         ENGINE = Distributed({cluster}, {database}, {local}, cityHash64({key}))"
    )
}

pub const LEDGER_APPLIED: &str = "SELECT version, name, checksum FROM schema_migrations FINAL ORDER BY version";

pub const LEDGER_RECORD: &str =
    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, now())";

/// The migration lock (see `migrate::lock`): created without IF NOT EXISTS, so that exactly one
/// process succeeds.
pub const MIGRATION_LOCK_CREATE: &str =
    "CREATE TABLE schema_migrations_lock (holder String, since DateTime('UTC')) ENGINE = TinyLog";
pub const MIGRATION_LOCK_HOLD: &str = "INSERT INTO schema_migrations_lock (holder, since) VALUES (?, now())";
pub const MIGRATION_LOCK_EXISTS: &str =
    "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations_lock'";
pub const MIGRATION_LOCK_HOLDER: &str = "SELECT holder, toUInt64(greatest(toInt64(now()) - toInt64(since), 0)) AS age_secs FROM schema_migrations_lock LIMIT 1";
pub const MIGRATION_LOCK_DROP: &str = "DROP TABLE IF EXISTS schema_migrations_lock";

/// The migration lock on a cluster: created `ON CLUSTER`, which succeeds for exactly one of
/// several processes (the DDL queue in ZooKeeper orders them; every server runs the first and
/// refuses the second). A holder row would be written on one server only, so the holder's name is
/// the column's default, part of the table's definition on every server, and its age the
/// definition's.
pub fn migration_lock_create_on_cluster(cluster: &str, database: &str) -> String {
    format!(
        "CREATE TABLE {database}.schema_migrations_lock ON CLUSTER {cluster} (holder String DEFAULT ?) ENGINE = TinyLog"
    )
}
pub const MIGRATION_LOCK_HOLDER_ON_CLUSTER: &str = "SELECT extract(create_table_query, 'DEFAULT \\'([^\\']*)\\'') AS holder, \
     toUInt64(greatest(toInt64(now()) - toInt64(metadata_modification_time), 0)) AS age_secs \
     FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations_lock'";
pub fn migration_lock_drop_on_cluster(cluster: &str, database: &str) -> String {
    drop_on_cluster("schema_migrations_lock", cluster, database)
}

pub const TABLE_COLUMNS: &str =
    "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ? ORDER BY name";

pub const LATEST_POSITIONS: &str = "SELECT ?fields FROM device_latest FINAL ORDER BY device_id LIMIT ?";

pub const TRACK: &str = "SELECT ?fields FROM positions FINAL \
     WHERE device_id = ? AND fix_time_ms >= ? AND fix_time_ms < ? \
     ORDER BY fix_time_ms LIMIT ?";

/// Every stored version of these devices' positions after a time (no FINAL: the processors
/// choose the version their state covers).
pub const WINDOW_ROWS: &str = "SELECT ?fields FROM positions WHERE has(?, device_id) AND fix_time_ms > ?";

/// These devices' positions within a time range, as readers see them.
pub const POSITIONS_OF_DEVICES: &str =
    "SELECT ?fields FROM positions FINAL WHERE has(?, device_id) AND fix_time_ms >= ? AND fix_time_ms <= ?";

pub const DEVICE_STATES: &str = "SELECT ?fields FROM processor_state FINAL WHERE has(?, device_id)";

pub const FENCES_VERSION: &str = "SELECT max(version) FROM geofences";

pub const LIVE_FENCES: &str = "SELECT ?fields FROM geofences FINAL WHERE deleted = 0 ORDER BY fence_id";

pub const FENCE: &str = "SELECT ?fields FROM geofences FINAL WHERE fence_id = ? AND deleted = 0";

// Geofence events: `retracted` is not part of the sorting key, so it is filtered *outside* a
// subquery that applies FINAL. A filter on a non-key column next to FINAL may be evaluated
// before the newest version is chosen (PREWHERE) and would resurrect a retracted event.

/// Events of a range for a device and a fence (`''`: any), oldest first.
pub const GEOFENCE_EVENTS_OF_RANGE: &str = "SELECT ?fields FROM (SELECT * FROM geofence_events FINAL \
     WHERE event_time_ms >= ? AND event_time_ms < ? AND (? = '' OR device_id = ?) AND (? = '' OR fence_id = ?)) \
     WHERE retracted = 0 ORDER BY event_time_ms, device_id, fence_id, event_type LIMIT ?";

/// The same, newest first (the dashboard's recent events).
pub const GEOFENCE_EVENTS_OF_RANGE_NEWEST_FIRST: &str = "SELECT ?fields FROM (SELECT * FROM geofence_events FINAL \
     WHERE event_time_ms >= ? AND event_time_ms < ? AND (? = '' OR device_id = ?) AND (? = '' OR fence_id = ?)) \
     WHERE retracted = 0 ORDER BY event_time_ms DESC, device_id DESC, fence_id DESC, event_type DESC LIMIT ?";

/// Devices whose latest event for the fence is an enter: inside now, since then.
pub const FENCE_OCCUPANTS: &str = "SELECT device_id, since_ms FROM ( \
     SELECT device_id, argMax(event_type, event_time_ms) AS last_type, max(event_time_ms) AS since_ms \
     FROM (SELECT * FROM geofence_events FINAL WHERE fence_id = ?) WHERE retracted = 0 GROUP BY device_id) \
     WHERE last_type = 'enter' ORDER BY device_id LIMIT ?";

pub const REGISTRY_VERSION: &str = "SELECT max(version) FROM devices";

pub const REGISTERED_DEVICES: &str =
    "SELECT ?fields FROM devices FINAL WHERE deleted = 0 AND device_id > ? ORDER BY device_id LIMIT ?";

pub const REGISTERED_DEVICE: &str = "SELECT ?fields FROM devices FINAL WHERE device_id = ? AND deleted = 0";

/// Every webhook (not deleted), oldest first.
pub const WEBHOOKS_ALL: &str =
    "SELECT ?fields FROM webhooks FINAL WHERE deleted = 0 ORDER BY created_at_ms, webhook_id";

pub const WEBHOOK: &str = "SELECT ?fields FROM webhooks FINAL WHERE webhook_id = ? AND deleted = 0";

/// The newest webhook version, 0 when none: delivery workers poll it to notice changes.
pub const WEBHOOKS_VERSION: &str = "SELECT max(version) FROM webhooks";

/// A webhook's deliveries, newest first, each in its latest state.
pub const WEBHOOK_DELIVERIES_OF: &str = "SELECT ?fields FROM webhook_deliveries FINAL WHERE webhook_id = ? \
     AND (? = '' OR status = ?) ORDER BY last_attempt_ms DESC, delivery_id LIMIT ?";

/// Every alert rule (not deleted), by id.
pub const ALERT_RULES_ALL: &str = "SELECT ?fields FROM alert_rules FINAL WHERE deleted = 0 ORDER BY rule_id";

pub const ALERT_RULE: &str = "SELECT ?fields FROM alert_rules FINAL WHERE rule_id = ? AND deleted = 0";

/// The newest alert rule version, 0 when none: processors poll it to notice changes.
pub const ALERT_RULES_VERSION: &str = "SELECT max(version) FROM alert_rules";

/// Alerts fired in `[from, to)` (an alert is never fired before its episode started, which
/// lets the month partitions of later episodes be skipped), optionally of one device and one
/// kind, oldest first.
/// The alert time differs between copies of one alert and is not in the sorting key: it is
/// filtered after FINAL has chosen each alert's newest copy.
pub const ALERTS_OF_RANGE: &str = "SELECT ?fields FROM (SELECT * FROM alerts FINAL \
     WHERE started_ms < ? AND (? = '' OR device_id = ?) AND (? = '' OR kind = ?)) \
     WHERE retracted = 0 AND alert_time_ms >= ? AND alert_time_ms < ? \
     ORDER BY alert_time_ms, device_id, rule_id LIMIT ?";

/// The same, newest first (the dashboard's recent alerts).
pub const ALERTS_OF_RANGE_NEWEST_FIRST: &str = "SELECT ?fields FROM (SELECT * FROM alerts FINAL \
     WHERE started_ms < ? AND (? = '' OR device_id = ?) AND (? = '' OR kind = ?)) \
     WHERE retracted = 0 AND alert_time_ms >= ? AND alert_time_ms < ? \
     ORDER BY alert_time_ms DESC, device_id DESC, rule_id DESC LIMIT ?";

/// Device counts for the live dashboard: total, with a fix since `?`, and of those moving.
pub const LIVE_DEVICE_COUNTS: &str = "SELECT count(), countIf(fix_time_ms >= ?), \
     countIf(fix_time_ms >= ? AND ifNull(speed_mps, 0) >= ?) FROM device_latest FINAL";

/// Devices inside each fence now (latest event per device and fence is an enter).
pub const FENCE_OCCUPANCY: &str = "SELECT fence_id, countIf(last_type = 'enter') AS inside FROM ( \
     SELECT fence_id, device_id, argMax(event_type, event_time_ms) AS last_type \
     FROM (SELECT * FROM geofence_events FINAL) WHERE retracted = 0 GROUP BY fence_id, device_id) \
     GROUP BY fence_id HAVING inside > 0 ORDER BY fence_id";

/// Positions written and lag per minute since `?`.
pub const THROUGHPUT_PER_MINUTE: &str = "SELECT intDiv(written_at_ms, 60000) * 60000 AS minute, sum(positions), \
     sum(lag_ms_sum), max(lag_ms_max) FROM pipeline_stats WHERE written_at_ms >= ? GROUP BY minute ORDER BY minute";

/// Positions written and lag since `?` (the first column echoes it).
pub const THROUGHPUT_SINCE: &str = "SELECT toInt64(?) AS since, sum(positions), sum(lag_ms_sum), max(lag_ms_max) \
     FROM pipeline_stats WHERE written_at_ms >= since";

/// Distance and positions per device and UTC day; `''` for the device means every device.
pub const DISTANCE_PER_DAY: &str = "SELECT device_id, toString(toDate(toDateTime(intDiv(fix_time_ms, 1000), 'UTC'))) AS day, \
     sum(ifNull(distance_m, 0)), count() FROM positions FINAL \
     WHERE fix_time_ms >= ? AND fix_time_ms < ? AND (? = '' OR device_id = ?) \
     GROUP BY device_id, day ORDER BY device_id, day LIMIT ?";
