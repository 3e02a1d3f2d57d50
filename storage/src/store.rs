//! [`Store`]: the operations the pipeline needs from ClickHouse, and nothing else.

use crate::config::ClickHouseConfig;
use crate::engine::chdb::Chdb;
use crate::engine::http::Http;
use crate::engine::{Engine, ReadRow, WriteRow, args};
use crate::error::{Context, Result, StoreError};
use crate::rows::{
    AlertRow, AlertRuleRow, DeviceRow, DeviceStateRow, FenceRow, GeofenceEventRow, LatestRow, PipelineStatRow,
    PositionRow, Throughput, WebhookDeliveryRow, WebhookRow, WindowRow,
};
use crate::{migrate, sql};

/// Which alerts to read (`""` for a device or kind: any), oldest or newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    pub device_id: &'a str,
    pub kind: &'a str,
    pub limit: u64,
    pub newest_first: bool,
}

/// Which geofence events to read (`""` for a device or fence: any).
#[derive(Debug, Clone, Default)]
pub struct EventQuery<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    pub device_id: &'a str,
    pub fence_id: &'a str,
    pub limit: u64,
    pub newest_first: bool,
}

/// A handle on fleetstream's ClickHouse database. Cheap to clone (one connection pool, or one
/// embedded session).
#[derive(Clone)]
pub struct Store {
    client: Engine,
    database: String,
    /// The migrations this handle applied when it opened the database (none if another process
    /// had applied them).
    applied_at_open: Vec<u32>,
}

impl Store {
    /// Connects (or loads the embedded engine), creates the database if needed, applies
    /// migrations and checks table shapes.
    pub async fn open(config: &ClickHouseConfig) -> Result<Store> {
        let (client, cluster) = Store::connect(config).await?;
        let applied = migrate::apply_migrations(&client, cluster.as_ref()).await?;
        migrate::check_shapes(&client).await?;
        tracing::info!(storage = %config.describe(), ?applied, "ClickHouse schema ready");
        Ok(Store { client, database: config.database.clone(), applied_at_open: applied })
    }

    /// Opens the database with only the migrations up to version `last` applied, as an older
    /// release left it, and without checking table shapes: for tests of upgrades, which write
    /// rows of the old shapes with [`Store::execute_trusted`] and then [`Store::open`] it.
    #[doc(hidden)]
    pub async fn open_migrated_to(config: &ClickHouseConfig, last: u32) -> Result<Store> {
        let (client, cluster) = Store::connect(config).await?;
        let applied = migrate::apply_migrations_to(&client, cluster.as_ref(), last).await?;
        Ok(Store { client, database: config.database.clone(), applied_at_open: applied })
    }

    /// Connects (or loads the embedded engine) and creates the database if needed; on a cluster,
    /// on every server of it.
    async fn connect(config: &ClickHouseConfig) -> Result<(Engine, Option<migrate::Cluster>)> {
        let database = &config.database;
        if !migrate::valid_database_name(database) {
            return Err(StoreError::DatabaseName(database.clone()));
        }
        let cluster = config.cluster.as_deref().map(|name| migrate::Cluster::new(name, database)).transpose()?;
        Ok(match &config.chdb_dir {
            Some(_) if cluster.is_some() => {
                return Err(StoreError::Cluster(
                    "embedded ClickHouse (--chdb-dir) is one process, not a cluster".into(),
                ));
            }
            Some(dir) => (
                Engine::Chdb(
                    Chdb::open(&config.chdb_library(), dir, database).await.context("open embedded ClickHouse")?,
                ),
                None,
            ),
            None => {
                let server = Http::new(config, "default")?;
                let on_default = Engine::Http(Box::new(server.clone()));
                migrate::create_database(&on_default, database, cluster.as_ref())
                    .await
                    .map_err(|e| e.unreachable(config))?;
                (Engine::Http(Box::new(server.with_database(database))), cluster)
            }
        })
    }

    /// The migrations this handle applied when it opened the database; empty when another
    /// process had applied them all (or applied them while this one waited for the lock).
    pub fn applied_at_open(&self) -> &[u32] {
        &self.applied_at_open
    }

    /// The migration ledger of this database.
    pub async fn applied_migrations(&self) -> Result<Vec<migrate::Applied>> {
        migrate::applied_migrations(&self.client).await
    }

    /// Runs one statement written by us, never by a user: tests and administrative tools.
    #[doc(hidden)]
    pub async fn execute_trusted(&self, sql: &str) -> Result<()> {
        self.client.execute(sql, args![]).await.context("statement")
    }

    /// Runs one query written by us, never by a user: tests and administrative tools.
    #[doc(hidden)]
    pub async fn query_trusted<T: ReadRow>(&self, sql: &str) -> Result<Vec<T>> {
        self.client.fetch_all(sql, args![]).await.context("query")
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Writes one batch in a single INSERT. Returns only once ClickHouse accepted every row, so
    /// a caller may then commit the source offsets.
    async fn insert_rows<T: WriteRow>(&self, table: &str, rows: &[T]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.client.insert(table, rows).await.context(format!("insert {} rows into {table}", rows.len()))
    }

    /// Writes rows of a table partitioned by month, in as few INSERTs as ClickHouse accepts: it
    /// refuses a block spanning more than `max_partitions_per_insert_block` (100) partitions,
    /// which one device's history import easily does. Returns once every row is in.
    async fn insert_by_month<T: WriteRow + Clone>(
        &self,
        table: &str,
        rows: &[T],
        time_ms: fn(&T) -> i64,
    ) -> Result<()> {
        for chunk in chunks_by_month(rows, time_ms) {
            match chunk {
                Chunk::All => return self.insert_rows(table, rows).await,
                Chunk::Some(rows) => self.insert_rows(table, &rows).await?,
            }
        }
        Ok(())
    }

    pub async fn insert_positions(&self, rows: &[PositionRow]) -> Result<()> {
        self.insert_by_month(sql::POSITIONS, rows, |r| r.fix_time_ms).await
    }

    pub async fn insert_geofence_events(&self, rows: &[GeofenceEventRow]) -> Result<()> {
        self.insert_by_month(sql::GEOFENCE_EVENTS, rows, |r| r.event_time_ms).await
    }

    pub async fn insert_alerts(&self, rows: &[AlertRow]) -> Result<()> {
        self.insert_by_month(sql::ALERTS, rows, |r| r.started_ms).await
    }

    pub async fn insert_device_states(&self, rows: &[DeviceStateRow]) -> Result<()> {
        self.insert_rows(sql::PROCESSOR_STATE, rows).await
    }

    /// Records a written batch for the dashboard's throughput and lag.
    pub async fn insert_pipeline_stat(&self, row: &PipelineStatRow) -> Result<()> {
        self.insert_rows(sql::PIPELINE_STATS, std::slice::from_ref(row)).await
    }

    /// Positions written and lag per minute, for minutes from `since_ms` on.
    pub async fn throughput_per_minute(&self, since_ms: i64) -> Result<Vec<Throughput>> {
        self.client.fetch_all(sql::THROUGHPUT_PER_MINUTE, args![since_ms]).await.context("throughput per minute")
    }

    /// Positions written and lag since `since_ms`.
    pub async fn throughput_since(&self, since_ms: i64) -> Result<Throughput> {
        self.client.fetch_one(sql::THROUGHPUT_SINCE, args![since_ms]).await.context("throughput")
    }

    /// The stored processing state of each of these devices (those that have one). Asks in
    /// chunks whose id lists stay well under ClickHouse's query size limit (256 KiB), however
    /// many devices and however long their ids.
    pub async fn device_states(&self, device_ids: &[String]) -> Result<Vec<DeviceStateRow>> {
        let mut states = Vec::new();
        for ids in chunks_by_literal_size(device_ids, MAX_ID_LIST_BYTES) {
            let rows: Vec<DeviceStateRow> =
                self.client.fetch_all(sql::DEVICE_STATES, args![ids]).await.context("load device states")?;
            states.extend(rows);
        }
        Ok(states)
    }

    /// Every stored version of these devices' positions with a fix time after `after_ms`: what
    /// their recent histories are rebuilt from.
    pub async fn window_rows(&self, device_ids: &[String], after_ms: i64) -> Result<Vec<WindowRow>> {
        let mut rows = Vec::new();
        for ids in chunks_by_literal_size(device_ids, MAX_ID_LIST_BYTES) {
            let chunk: Vec<WindowRow> =
                self.client.fetch_all(sql::WINDOW_ROWS, args![ids, after_ms]).await.context("load recent positions")?;
            rows.extend(chunk);
        }
        Ok(rows)
    }

    /// These devices' positions with `from_ms <= fix_time <= to_ms` (the newest version of each).
    pub async fn positions_of_devices(
        &self,
        device_ids: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PositionRow>> {
        let mut rows = Vec::new();
        for ids in chunks_by_literal_size(device_ids, MAX_ID_LIST_BYTES) {
            let args = args![ids, from_ms, to_ms];
            let chunk: Vec<PositionRow> =
                self.client.fetch_all(sql::POSITIONS_OF_DEVICES, args).await.context("load positions to correct")?;
            rows.extend(chunk);
        }
        Ok(rows)
    }

    /// Writes a new version of a fence (a deletion is a version with `deleted = 1`).
    pub async fn put_fence(&self, row: &FenceRow) -> Result<()> {
        self.insert_rows(sql::GEOFENCES, std::slice::from_ref(row)).await
    }

    /// The newest fence version, 0 with no fences: processors poll it to notice changes.
    pub async fn fences_version(&self) -> Result<u64> {
        self.client.fetch_one::<u64>(sql::FENCES_VERSION, args![]).await.context("fences version")
    }

    /// Every fence that is not deleted, by id.
    pub async fn live_fences(&self) -> Result<Vec<FenceRow>> {
        self.client.fetch_all(sql::LIVE_FENCES, args![]).await.context("list fences")
    }

    pub async fn fence(&self, fence_id: &str) -> Result<Option<FenceRow>> {
        self.client.fetch_optional(sql::FENCE, args![fence_id]).await.context(format!("fence {fence_id}"))
    }

    /// Writes a new version of a registry entry (a deletion is a version with `deleted = 1`).
    pub async fn put_device(&self, row: &DeviceRow) -> Result<()> {
        self.insert_rows(sql::DEVICES, std::slice::from_ref(row)).await
    }

    /// The newest registry version, 0 when empty: processors poll it to notice changes.
    pub async fn registry_version(&self) -> Result<u64> {
        self.client.fetch_one::<u64>(sql::REGISTRY_VERSION, args![]).await.context("registry version")
    }

    /// Registered devices with ids after `after` (keyset pagination), at most `limit`.
    pub async fn registered_devices(&self, after: &str, limit: u64) -> Result<Vec<DeviceRow>> {
        self.client.fetch_all(sql::REGISTERED_DEVICES, args![after, limit]).await.context("list registered devices")
    }

    /// Every registered device, read in pages.
    pub async fn all_registered_devices(&self) -> Result<Vec<DeviceRow>> {
        const PAGE: u64 = 10_000;
        let mut all: Vec<DeviceRow> = Vec::new();
        loop {
            let after = all.last().map(|r| r.device_id.clone()).unwrap_or_default();
            let page = self.registered_devices(&after, PAGE).await?;
            let full = page.len() as u64 == PAGE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    pub async fn registered_device(&self, device_id: &str) -> Result<Option<DeviceRow>> {
        self.client
            .fetch_optional(sql::REGISTERED_DEVICE, args![device_id])
            .await
            .context(format!("registry entry of {device_id}"))
    }

    pub async fn put_webhook(&self, row: &WebhookRow) -> Result<()> {
        self.insert_rows(sql::WEBHOOKS, std::slice::from_ref(row)).await
    }

    /// Every webhook, oldest first (their number is bounded by the API).
    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>> {
        self.client.fetch_all(sql::WEBHOOKS_ALL, args![]).await.context("list webhooks")
    }

    pub async fn webhook(&self, webhook_id: &str) -> Result<Option<WebhookRow>> {
        self.client.fetch_optional(sql::WEBHOOK, args![webhook_id]).await.context(format!("webhook {webhook_id}"))
    }

    /// The newest webhook version, 0 when none: delivery workers poll it to notice changes.
    pub async fn webhooks_version(&self) -> Result<u64> {
        self.client.fetch_one::<u64>(sql::WEBHOOKS_VERSION, args![]).await.context("webhooks version")
    }

    pub async fn record_webhook_deliveries(&self, rows: &[WebhookDeliveryRow]) -> Result<()> {
        self.insert_rows(sql::WEBHOOK_DELIVERIES, rows).await
    }

    /// A webhook's deliveries, newest first, each in its latest state; only those in `status`
    /// unless it is empty.
    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        status: &str,
        limit: u64,
    ) -> Result<Vec<WebhookDeliveryRow>> {
        self.client
            .fetch_all(sql::WEBHOOK_DELIVERIES_OF, args![webhook_id, status, status, limit])
            .await
            .context(format!("deliveries of webhook {webhook_id}"))
    }

    pub async fn put_alert_rule(&self, row: &AlertRuleRow) -> Result<()> {
        self.insert_rows(sql::ALERT_RULES, std::slice::from_ref(row)).await
    }

    /// Every alert rule, by id (their number is bounded by the API).
    pub async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>> {
        self.client.fetch_all(sql::ALERT_RULES_ALL, args![]).await.context("list alert rules")
    }

    pub async fn alert_rule(&self, rule_id: &str) -> Result<Option<AlertRuleRow>> {
        self.client.fetch_optional(sql::ALERT_RULE, args![rule_id]).await.context(format!("alert rule {rule_id}"))
    }

    /// The newest alert rule version, 0 when none: processors poll it to notice changes.
    pub async fn alert_rules_version(&self) -> Result<u64> {
        self.client.fetch_one::<u64>(sql::ALERT_RULES_VERSION, args![]).await.context("alert rules version")
    }

    /// Alerts as `q` asks, retracted ones left out.
    pub async fn alerts(&self, q: &AlertQuery<'_>) -> Result<Vec<AlertRow>> {
        let sql = if q.newest_first { sql::ALERTS_OF_RANGE_NEWEST_FIRST } else { sql::ALERTS_OF_RANGE };
        let args = args![q.to_ms, q.device_id, q.device_id, q.kind, q.kind, q.from_ms, q.to_ms, q.limit];
        self.client.fetch_all(sql, args).await.context("alerts")
    }

    /// (devices, online since `online_since_ms`, online and moving at `moving_mps` or faster).
    pub async fn live_device_counts(&self, online_since_ms: i64, moving_mps: f64) -> Result<(u64, u64, u64)> {
        self.client
            .fetch_one(sql::LIVE_DEVICE_COUNTS, args![online_since_ms, online_since_ms, moving_mps])
            .await
            .context("live device counts")
    }

    /// Devices inside each fence now, for fences with any.
    pub async fn fence_occupancy(&self) -> Result<Vec<(String, u64)>> {
        self.client.fetch_all(sql::FENCE_OCCUPANCY, args![]).await.context("fence occupancy")
    }

    /// The devices inside a fence now, with the time each entered, at most `limit`.
    pub async fn fence_occupants(&self, fence_id: &str, limit: u64) -> Result<Vec<(String, i64)>> {
        self.client
            .fetch_all(sql::FENCE_OCCUPANTS, args![fence_id, limit])
            .await
            .context(format!("occupants of {fence_id}"))
    }

    /// Geofence events with `from_ms <= event_time < to_ms`, in time order, at most `limit`.
    pub async fn geofence_events(&self, from_ms: i64, to_ms: i64, limit: u64) -> Result<Vec<GeofenceEventRow>> {
        self.geofence_events_where(&EventQuery { from_ms, to_ms, limit, ..EventQuery::default() }).await
    }

    /// Geofence events as `query` asks: a time range, optionally one device and one fence,
    /// oldest or newest first.
    pub async fn geofence_events_where(&self, q: &EventQuery<'_>) -> Result<Vec<GeofenceEventRow>> {
        let sql =
            if q.newest_first { sql::GEOFENCE_EVENTS_OF_RANGE_NEWEST_FIRST } else { sql::GEOFENCE_EVENTS_OF_RANGE };
        let args = args![q.from_ms, q.to_ms, q.device_id, q.device_id, q.fence_id, q.fence_id, q.limit];
        self.client.fetch_all(sql, args).await.context("geofence events")
    }

    /// (device, UTC day `YYYY-MM-DD`, metres travelled, positions) for fixes in the range, for one
    /// device or (with `""`) every device, at most `limit` rows.
    pub async fn distance_per_day(
        &self,
        device_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u64,
    ) -> Result<Vec<(String, String, f64, u64)>> {
        self.client
            .fetch_all(sql::DISTANCE_PER_DAY, args![from_ms, to_ms, device_id, device_id, limit])
            .await
            .context("distance per day")
    }

    /// The latest fix of every device, by device id, at most `limit` devices.
    pub async fn latest_positions(&self, limit: u64) -> Result<Vec<LatestRow>> {
        self.client.fetch_all(sql::LATEST_POSITIONS, args![limit]).await.context("latest positions")
    }

    /// A device's positions with `from_ms <= fix_time < to_ms`, in time order, at most `limit`.
    pub async fn track(&self, device_id: &str, from_ms: i64, to_ms: i64, limit: u64) -> Result<Vec<PositionRow>> {
        self.client
            .fetch_all(sql::TRACK, args![device_id, from_ms, to_ms, limit])
            .await
            .context(format!("track of {device_id}"))
    }

    /// The server's version: a cheap round trip for readiness checks.
    pub async fn server_version(&self) -> Result<String> {
        self.client.fetch_one::<String>(sql::SERVER_VERSION, args![]).await.context("server version")
    }
}

/// Most months one INSERT may span. ClickHouse's limit is 100 partitions per block; the tables
/// are partitioned by month in the *server's* time zone, so one UTC month may touch two.
const MAX_MONTHS_PER_INSERT: usize = 40;

/// Longest id list literal in one query (ClickHouse refuses queries over 256 KiB by default).
const MAX_ID_LIST_BYTES: usize = 64 * 1024;

/// A slice of rows to insert: all of them (the common case, no copy), or some.
enum Chunk<T> {
    All,
    Some(Vec<T>),
}

/// Groups rows so that no group spans more than [`MAX_MONTHS_PER_INSERT`] months. Counting the
/// months copies nothing: rows are copied into groups only in the rare case that needs them.
fn chunks_by_month<T: Clone>(rows: &[T], time_ms: fn(&T) -> i64) -> Vec<Chunk<T>> {
    let month = |row: &T| fleetstream_schemas::time::month_index(time_ms(row));
    let months: std::collections::BTreeSet<i64> = rows.iter().map(month).collect();
    if months.len() <= MAX_MONTHS_PER_INSERT {
        return vec![Chunk::All];
    }
    // Each month's group number, months in order, so that a group holds consecutive months.
    let group_of: std::collections::HashMap<i64, usize> =
        months.iter().enumerate().map(|(i, m)| (*m, i / MAX_MONTHS_PER_INSERT)).collect();
    let mut groups: Vec<Vec<T>> = vec![Vec::new(); months.len().div_ceil(MAX_MONTHS_PER_INSERT)];
    for row in rows {
        groups[group_of[&month(row)]].push(row.clone());
    }
    groups.into_iter().map(Chunk::Some).collect()
}

/// Splits ids into lists whose SQL literal (`['a','b']`, quotes and backslashes escaped) stays
/// within `max_bytes` (a single longer id goes alone).
fn chunks_by_literal_size(ids: &[String], max_bytes: usize) -> Vec<&[String]> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 2);
    for (i, id) in ids.iter().enumerate() {
        let escaped = id.len() + id.bytes().filter(|b| matches!(b, b'\'' | b'\\')).count() + 3;
        if i > start && size + escaped > max_bytes {
            chunks.push(&ids[start..i]);
            (start, size) = (i, 2);
        }
        size += escaped;
    }
    if start < ids.len() {
        chunks.push(&ids[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MONTH_MS: i64 = 31 * 24 * 3600 * 1000;

    #[test]
    fn a_decade_of_monthly_fixes_is_split_into_inserts_of_at_most_40_months() {
        let rows: Vec<i64> = (0..120).map(|m| 1_262_304_000_000 + m * MONTH_MS).collect();
        let chunks = chunks_by_month(&rows, |t| *t);
        assert_eq!(chunks.len(), 3);
        let mut all: Vec<i64> = Vec::new();
        for chunk in chunks {
            let Chunk::Some(rows) = chunk else { panic!("split expected") };
            let months: std::collections::BTreeSet<i64> =
                rows.iter().map(|t| fleetstream_schemas::time::month_index(*t)).collect();
            assert!(months.len() <= MAX_MONTHS_PER_INSERT);
            all.extend(rows);
        }
        all.sort();
        assert_eq!(all, rows, "every row exactly once");
        assert!(matches!(chunks_by_month(&rows[..40], |t| *t)[..], [Chunk::All]));
    }

    proptest! {
        #[test]
        fn month_groups_keep_every_row_once_and_span_at_most_40_months(months in proptest::collection::vec(0i64..130, 0..600)) {
            let rows: Vec<i64> = months.iter().enumerate().map(|(i, m)| 1_262_304_000_000 + m * MONTH_MS + i as i64).collect();
            let month = |t: &i64| fleetstream_schemas::time::month_index(*t);
            let distinct: std::collections::BTreeSet<i64> = rows.iter().map(month).collect();
            let chunks = chunks_by_month(&rows, |t| *t);
            if distinct.len() <= MAX_MONTHS_PER_INSERT {
                prop_assert!(matches!(chunks[..], [Chunk::All]));
            } else {
                let mut all = Vec::new();
                for chunk in chunks {
                    let Chunk::Some(group) = chunk else { panic!("a split was needed") };
                    let spanned: std::collections::BTreeSet<i64> = group.iter().map(month).collect();
                    prop_assert!(!group.is_empty() && spanned.len() <= MAX_MONTHS_PER_INSERT);
                    all.extend(group);
                }
                all.sort();
                let mut expected = rows.clone();
                expected.sort();
                prop_assert_eq!(all, expected);
            }
        }

        #[test]
        fn id_lists_stay_small_and_keep_every_id(ids in proptest::collection::vec("[a-z'\\\\]{0,40}", 0..400), max in 10usize..300) {
            let chunks = chunks_by_literal_size(&ids, max);
            prop_assert_eq!(chunks.concat(), ids.clone());
            for chunk in chunks {
                prop_assert!(!chunk.is_empty());
                let literal: usize = 2 + chunk.iter().map(|id| id.len() + id.bytes().filter(|b| matches!(b, b'\'' | b'\\')).count() + 3).sum::<usize>();
                prop_assert!(literal <= max || chunk.len() == 1, "{} > {}", literal, max);
            }
        }
    }
}
