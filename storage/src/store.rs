//! [`Store`]: the operations the pipeline needs from ClickHouse, and nothing else.

use clickhouse::{Client, RowOwned, RowWrite};

use crate::config::ClickHouseConfig;
use crate::error::{Context, Result};
use crate::rows::{DeviceRow, DeviceStateRow, FenceRow, GeofenceEventRow, LatestRow, PositionRow};
use crate::{migrate, sql};

/// A handle on fleetstream's ClickHouse database. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Store {
    client: Client,
    database: String,
}

impl Store {
    /// Connects, creates the database if needed, applies migrations and checks table shapes.
    pub async fn open(config: &ClickHouseConfig) -> Result<Store> {
        let server = client_for(config, "default");
        migrate::create_database(&server, &config.database).await?;
        let client = client_for(config, &config.database);
        let applied = migrate::apply_migrations(&client).await?;
        migrate::check_shapes(&client).await?;
        tracing::info!(database = %config.database, ?applied, "ClickHouse schema ready");
        Ok(Store { client, database: config.database.clone() })
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Writes one batch in a single INSERT. Returns only once ClickHouse accepted every row, so
    /// a caller may then commit the source offsets.
    async fn insert_rows<T: RowOwned + RowWrite>(&self, table: &str, rows: &[T]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await.context(format!("start insert into {table}"))?;
        for row in rows {
            insert.write(row).await.context(format!("write a {table} row"))?;
        }
        insert.end().await.context(format!("insert {} rows into {table}", rows.len()))
    }

    pub async fn insert_positions(&self, rows: &[PositionRow]) -> Result<()> {
        self.insert_rows(sql::POSITIONS, rows).await
    }

    pub async fn insert_geofence_events(&self, rows: &[GeofenceEventRow]) -> Result<()> {
        self.insert_rows(sql::GEOFENCE_EVENTS, rows).await
    }

    pub async fn insert_device_states(&self, rows: &[DeviceStateRow]) -> Result<()> {
        self.insert_rows(sql::PROCESSOR_STATE, rows).await
    }

    /// The stored processing state of each of these devices (those that have one).
    pub async fn device_states(&self, device_ids: &[String]) -> Result<Vec<DeviceStateRow>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.client.query(sql::DEVICE_STATES).bind(device_ids).fetch_all().await.context("load device states")
    }

    /// Writes a new version of a fence (a deletion is a version with `deleted = 1`).
    pub async fn put_fence(&self, row: &FenceRow) -> Result<()> {
        self.insert_rows(sql::GEOFENCES, std::slice::from_ref(row)).await
    }

    /// The newest fence version, 0 with no fences: processors poll it to notice changes.
    pub async fn fences_version(&self) -> Result<u64> {
        self.client.query(sql::FENCES_VERSION).fetch_one::<u64>().await.context("fences version")
    }

    /// Every fence that is not deleted, by id.
    pub async fn live_fences(&self) -> Result<Vec<FenceRow>> {
        self.client.query(sql::LIVE_FENCES).fetch_all().await.context("list fences")
    }

    pub async fn fence(&self, fence_id: &str) -> Result<Option<FenceRow>> {
        self.client.query(sql::FENCE).bind(fence_id).fetch_optional().await.context(format!("fence {fence_id}"))
    }

    /// Writes a new version of a registry entry (a deletion is a version with `deleted = 1`).
    pub async fn put_device(&self, row: &DeviceRow) -> Result<()> {
        self.insert_rows(sql::DEVICES, std::slice::from_ref(row)).await
    }

    /// The newest registry version, 0 when empty: processors poll it to notice changes.
    pub async fn registry_version(&self) -> Result<u64> {
        self.client.query(sql::REGISTRY_VERSION).fetch_one::<u64>().await.context("registry version")
    }

    /// Registered devices with ids after `after` (keyset pagination), at most `limit`.
    pub async fn registered_devices(&self, after: &str, limit: u64) -> Result<Vec<DeviceRow>> {
        self.client
            .query(sql::REGISTERED_DEVICES)
            .bind(after)
            .bind(limit)
            .fetch_all()
            .await
            .context("list registered devices")
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
            .query(sql::REGISTERED_DEVICE)
            .bind(device_id)
            .fetch_optional()
            .await
            .context(format!("registry entry of {device_id}"))
    }

    /// (devices, online since `online_since_ms`, online and moving at `moving_mps` or faster).
    pub async fn live_device_counts(&self, online_since_ms: i64, moving_mps: f64) -> Result<(u64, u64, u64)> {
        self.client
            .query(sql::LIVE_DEVICE_COUNTS)
            .bind(online_since_ms)
            .bind(online_since_ms)
            .bind(moving_mps)
            .fetch_one()
            .await
            .context("live device counts")
    }

    /// Devices inside each fence now, for fences with any.
    pub async fn fence_occupancy(&self) -> Result<Vec<(String, u64)>> {
        self.client.query(sql::FENCE_OCCUPANCY).fetch_all().await.context("fence occupancy")
    }

    /// The devices inside a fence now, with the time each entered, at most `limit`.
    pub async fn fence_occupants(&self, fence_id: &str, limit: u64) -> Result<Vec<(String, i64)>> {
        self.client
            .query(sql::FENCE_OCCUPANTS)
            .bind(fence_id)
            .bind(limit)
            .fetch_all()
            .await
            .context(format!("occupants of {fence_id}"))
    }

    /// Geofence events with `from_ms <= event_time < to_ms`, in time order, at most `limit`.
    pub async fn geofence_events(&self, from_ms: i64, to_ms: i64, limit: u64) -> Result<Vec<GeofenceEventRow>> {
        self.client
            .query(sql::GEOFENCE_EVENTS_OF_RANGE)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit)
            .fetch_all()
            .await
            .context("geofence events")
    }

    /// The latest fix of every device, by device id, at most `limit` devices.
    pub async fn latest_positions(&self, limit: u64) -> Result<Vec<LatestRow>> {
        self.client.query(sql::LATEST_POSITIONS).bind(limit).fetch_all().await.context("latest positions")
    }

    /// The latest stored fix of each of these devices (those that have one).
    pub async fn latest_of_devices(&self, device_ids: &[String]) -> Result<Vec<LatestRow>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.client.query(sql::LATEST_OF_DEVICES).bind(device_ids).fetch_all().await.context("latest fix of devices")
    }

    /// A device's positions with `from_ms <= fix_time < to_ms`, in time order, at most `limit`.
    pub async fn track(&self, device_id: &str, from_ms: i64, to_ms: i64, limit: u64) -> Result<Vec<PositionRow>> {
        self.client
            .query(sql::TRACK)
            .bind(device_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit)
            .fetch_all()
            .await
            .context(format!("track of {device_id}"))
    }

    /// The server's version: a cheap round trip for readiness checks.
    pub async fn server_version(&self) -> Result<String> {
        self.client.query(sql::SERVER_VERSION).fetch_one::<String>().await.context("server version")
    }
}

fn client_for(config: &ClickHouseConfig, database: &str) -> Client {
    Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(&config.password)
        .with_database(database)
        // ClickHouse 18.16 has no RowBinaryWithNamesAndTypes; migrate::check_shapes stands in.
        .with_validation(false)
}
