//! Applies the DDL from `schemas/migrations/` and checks table shapes at startup.
//!
//! Safe to run from every process at once: one process at a time migrates (see [`lock`]), the
//! others wait for it and then find the ledger complete. A migration whose text changed after it was applied stops startup, because
//! silently running old and new schemas side by side corrupts data.
//!
//! On a cluster ([`cluster`]) the same migrations run as their `ON CLUSTER` variants, and the
//! `Distributed` tables are brought in line before every statement that moves rows and after
//! every migration.

use clickhouse::Row;
use fleetstream_schemas::migrations::{LEDGER_DDL, MIGRATIONS, Migration, Statement, statements};
use serde::Deserialize;

use crate::engine::{Engine, EngineError, args};
use crate::error::{Context, Result, StoreError};
use crate::rows::{
    AlertRow, AlertRuleRow, DeviceRow, DeviceStateRow, FenceRow, GeofenceEventRow, LatestRow, PipelineStatRow,
    PositionRow, WebhookDeliveryRow, WebhookRow,
};
use crate::sql;

pub(crate) mod cluster;
mod lock;

pub(crate) use cluster::Cluster;

/// One row of the migration ledger.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct Applied {
    pub version: u32,
    pub name: String,
    pub checksum: u64,
}

/// How many times a read of the catalog is tried (see [`read_catalog`]).
const CATALOG_READ_ATTEMPTS: u32 = 20;

/// Runs a read of `system.tables` or `system.columns` (`read`), again while it fails with
/// "Table … doesn't exist": ClickHouse 18.16 lists a database's tables and then opens each, so
/// a table that another process drops or renames in between fails the whole read (ClickHouse
/// issue 3982, fixed in later releases). While processes start together one migrates and the
/// others read the catalog; the next read sees the tables as they are now.
pub(crate) async fn read_catalog<T, F, Fut>(what: &str, read: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut attempt = 1;
    loop {
        match read().await {
            Err(e) if e.is_unknown_table() && attempt < CATALOG_READ_ATTEMPTS => {
                tracing::debug!(error = %e, what, "a table vanished while reading the catalog; reading it again");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
            }
            result => return result.context(what),
        }
    }
}

/// Database names are interpolated into DDL, so they are held to identifier characters.
pub fn valid_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

pub(crate) async fn create_database(server: &Engine, name: &str, cluster: Option<&Cluster>) -> Result<()> {
    let sql = sql::create_database(name, cluster.map(Cluster::name));
    server.execute(&sql, args![]).await.context(format!("create database {name}"))
}

/// Applies every migration not yet in the ledger; returns the versions it applied now.
pub(crate) async fn apply_migrations(client: &Engine, cluster: Option<&Cluster>) -> Result<Vec<u32>> {
    apply_migrations_to(client, cluster, u32::MAX).await
}

/// [`apply_migrations`], but only those up to version `last`: a database as an older release
/// left it (for tests of upgrades).
pub(crate) async fn apply_migrations_to(client: &Engine, cluster: Option<&Cluster>, last: u32) -> Result<Vec<u32>> {
    let ledger = statements(LEDGER_DDL).into_iter().map(|(_, sql)| Statement { sql, only_if_missing: None });
    for stmt in for_layout(cluster, "ledger", ledger.collect())? {
        client.execute(&stmt.sql, args![]).await.context("create the migration ledger")?;
    }
    if let Some(cluster) = cluster {
        // Outside the lock, so only the ledger's own: the other tables may be mid-migration.
        cluster.sync_distributed(client, Some(sql::LEDGER)).await?;
    }
    // Every start of every process reads the ledger; only one with something to apply locks,
    // and reads it again under the lock: whoever held it before may have applied them all.
    let applied = applied_migrations(client).await?;
    if MIGRATIONS.iter().filter(|m| m.version <= last).all(|m| applied.iter().any(|a| a.version == m.version)) {
        return apply_missing(client, cluster, &applied, last).await;
    }
    lock::with_lock(client, cluster, async || {
        apply_missing(client, cluster, &applied_migrations(client).await?, last).await
    })
    .await
}

/// Checks the applied migrations up to `last` against this build and applies the others.
async fn apply_missing(client: &Engine, cluster: Option<&Cluster>, applied: &[Applied], last: u32) -> Result<Vec<u32>> {
    let mut newly = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version <= last) {
        match applied.iter().find(|a| a.version == migration.version) {
            Some(done) => check_unchanged(migration, done)?,
            None => {
                apply_one(client, cluster, migration).await?;
                newly.push(migration.version);
            }
        }
    }
    Ok(newly)
}

/// The statements as they run here: as written on one server, their cluster variants on a cluster.
fn for_layout(cluster: Option<&Cluster>, name: &str, statements: Vec<Statement>) -> Result<Vec<Statement>> {
    match cluster {
        Some(cluster) => cluster.statements(name, statements),
        None => Ok(statements),
    }
}

/// The ledger: every migration applied to this database, by version.
pub(crate) async fn applied_migrations(client: &Engine) -> Result<Vec<Applied>> {
    client.fetch_all(sql::LEDGER_APPLIED, args![]).await.context("read the migration ledger")
}

fn check_unchanged(migration: &Migration, done: &Applied) -> Result<()> {
    if done.checksum != migration.checksum() || done.name != migration.name {
        return Err(StoreError::Migration {
            name: migration.name.to_string(),
            reason: format!(
                "was applied as {:?} with checksum {:x}, but this build has {:x}: released migrations must not be edited; add a new one",
                done.name,
                done.checksum,
                migration.checksum()
            ),
        });
    }
    Ok(())
}

async fn apply_one(client: &Engine, cluster: Option<&Cluster>, migration: &Migration) -> Result<()> {
    tracing::info!(migration = migration.name, "applying migration");
    for stmt in for_layout(cluster, migration.name, migration.statements())? {
        if let Some((table, column)) = &stmt.only_if_missing
            && table_columns(client, table).await?.iter().any(|c| c == column)
        {
            continue;
        }
        // Rows move through the Distributed tables, which must match their local tables by then.
        if let Some(cluster) = cluster
            && stmt.sql.get(..6).is_some_and(|head| head.eq_ignore_ascii_case("INSERT"))
        {
            cluster.sync_distributed(client, None).await?;
        }
        client.execute(&stmt.sql, args![]).await.context(format!("migration {}", migration.name))?;
    }
    if let Some(cluster) = cluster {
        cluster.sync_distributed(client, None).await?;
    }
    record_migration(client, migration.version, migration.name, migration.checksum()).await
}

/// Adds a row to the ledger.
pub(crate) async fn record_migration(client: &Engine, version: u32, name: &str, checksum: u64) -> Result<()> {
    client.execute(sql::LEDGER_RECORD, args![version, name, checksum]).await.context(format!("record migration {name}"))
}

/// Without server-side validation (ClickHouse 18.16 cannot do it) a row type that lacks a
/// column would silently write garbage, so every row type is checked against its table.
pub(crate) async fn check_shapes(client: &Engine) -> Result<()> {
    check_shape(client, sql::POSITIONS, PositionRow::COLUMN_NAMES).await?;
    check_shape(client, sql::DEVICE_LATEST, LatestRow::COLUMN_NAMES).await?;
    check_shape(client, sql::GEOFENCE_EVENTS, GeofenceEventRow::COLUMN_NAMES).await?;
    check_shape(client, sql::PROCESSOR_STATE, DeviceStateRow::COLUMN_NAMES).await?;
    check_shape(client, sql::GEOFENCES, FenceRow::COLUMN_NAMES).await?;
    check_shape(client, sql::DEVICES, DeviceRow::COLUMN_NAMES).await?;
    check_shape(client, sql::WEBHOOKS, WebhookRow::COLUMN_NAMES).await?;
    check_shape(client, sql::WEBHOOK_DELIVERIES, WebhookDeliveryRow::COLUMN_NAMES).await?;
    check_shape(client, sql::ALERT_RULES, AlertRuleRow::COLUMN_NAMES).await?;
    check_shape(client, sql::ALERTS, AlertRow::COLUMN_NAMES).await?;
    check_shape(client, sql::PIPELINE_STATS, PipelineStatRow::COLUMN_NAMES).await
}

async fn table_columns(client: &Engine, table: &str) -> Result<Vec<String>> {
    read_catalog(&format!("describe {table}"), || client.fetch_all(sql::TABLE_COLUMNS, args![table])).await
}

async fn check_shape(client: &Engine, table: &str, fields: &[&str]) -> Result<()> {
    let columns = table_columns(client, table).await?;
    let missing: Vec<&str> = fields.iter().copied().filter(|f| !columns.iter().any(|c| c == f)).collect();
    if !missing.is_empty() {
        return Err(StoreError::Shape { table: table.into(), reason: format!("missing columns {missing:?}") });
    }
    let extra: Vec<&String> = columns.iter().filter(|c| !fields.contains(&c.as_str())).collect();
    if !extra.is_empty() {
        return Err(StoreError::Shape { table: table.into(), reason: format!("columns {extra:?} have no field") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_identifiers() {
        assert!(valid_database_name("fleetstream"));
        assert!(valid_database_name("fs_test_42"));
        for bad in ["", "1db", "a-b", "a b", "x;DROP TABLE y", "ä", &"a".repeat(65)] {
            assert!(!valid_database_name(bad), "{bad:?}");
        }
    }
}
