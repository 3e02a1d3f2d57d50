//! fleetstream's schema on a ClickHouse cluster (`--clickhouse-cluster`): the migrations' cluster
//! variants (see `fleetstream_schemas::migrations::cluster`), and the `Distributed` tables that
//! follow the replicated local tables.
//!
//! Every replicated `t_local` has a `Distributed` table `t` over the cluster, sharded by
//! `cityHash64(device_id)` when `device_id` is part of its sorting key (every table a device's
//! rows live in), else by the first column of its sorting key (fences, the ledger, pipeline
//! statistics). Either way all copies of one row — all rows of one `ORDER BY` key — land on one
//! shard, which is what makes `FINAL` through the `Distributed` table correct: ClickHouse applies
//! `FINAL` on each shard and never across shards.
//!
//! A `Distributed` table has its own column list, so after a statement changed a local table
//! (ADD COLUMN, a rebuild swapped in by RENAME) [`Cluster::sync_distributed`] drops and
//! re-creates the `Distributed` table; it also drops those whose local table is gone.

use fleetstream_schemas::migrations::Statement;
use fleetstream_schemas::migrations::cluster::{LOCAL_SUFFIX, local_name, on_cluster};

use super::{read_catalog, valid_database_name};
use crate::engine::{Engine, args};
use crate::error::{Context, Result, StoreError};
use crate::sql;

/// A cluster of the server's `<remote_servers>`, holding one fleetstream database.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    name: String,
    database: String,
}

impl Cluster {
    /// Cluster and database names are interpolated into DDL, so both must be identifiers.
    pub fn new(name: &str, database: &str) -> Result<Cluster> {
        if !valid_database_name(name) {
            return Err(StoreError::Cluster(format!(
                "invalid cluster name {name:?}: use letters, digits and underscores, as in the server's <remote_servers>"
            )));
        }
        Ok(Cluster { name: name.into(), database: database.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The cluster variants of a migration's statements.
    pub fn statements(&self, migration: &str, statements: Vec<Statement>) -> Result<Vec<Statement>> {
        let mut out = Vec::new();
        for statement in statements {
            let variant = on_cluster(&statement, &self.name, &self.database)
                .map_err(|reason| StoreError::Migration { name: migration.into(), reason })?;
            out.extend(variant);
        }
        Ok(out)
    }

    /// Makes the `Distributed` tables match the local tables (only `only`'s, if given): creates
    /// the missing ones, re-creates those whose columns differ, drops those left without a local
    /// table. Idempotent; run under the migration lock except for the ledger's.
    pub async fn sync_distributed(&self, client: &Engine, only: Option<&str>) -> Result<()> {
        // (name, engine, engine_full, sorting_key)
        let tables: Vec<(String, String, String, String)> =
            read_catalog("list the tables", || client.fetch_all(sql::CLUSTER_TABLES, args![])).await?;
        let columns: Vec<(String, String, String)> =
            read_catalog("list the columns", || client.fetch_all(sql::CLUSTER_COLUMNS, args![])).await?;
        let columns_of = |table: &str| {
            let mut of: Vec<(&str, &str)> =
                columns.iter().filter(|c| c.0 == table).map(|c| (c.1.as_str(), c.2.as_str())).collect();
            of.sort();
            of
        };
        let wanted = |table: &str| only.is_none_or(|only| only == table);
        let exists = |table: &str| tables.iter().find(|t| t.0 == table);

        // Only the Distributed tables over our local tables: an analyst's own are left alone.
        let ours = |table: &str, engine: &str, engine_full: &str| {
            engine == "Distributed" && engine_full.contains(&format!(", {}, ", local_name(table)))
        };
        for (table, engine, engine_full, _) in &tables {
            if ours(table, engine, engine_full) && wanted(table) && exists(&local_name(table)).is_none() {
                tracing::info!(table, "dropping a Distributed table whose local table is gone");
                self.execute(client, &sql::drop_on_cluster(table, &self.name, &self.database)).await?;
            }
        }
        for (local, engine, _, sorting_key) in &tables {
            let Some(table) = local.strip_suffix(LOCAL_SUFFIX) else { continue };
            if !engine.starts_with("Replicated") || !wanted(table) {
                continue;
            }
            match exists(table) {
                Some((_, engine, engine_full, _)) if !ours(table, engine, engine_full) => {
                    return Err(StoreError::Cluster(format!(
                        "table {table} is a {engine_full}, not the Distributed table over {local}"
                    )));
                }
                Some(_) if columns_of(table) == columns_of(local) => continue,
                Some(_) => {
                    tracing::info!(table, "re-creating a Distributed table: its local table changed");
                    self.execute(client, &sql::drop_on_cluster(table, &self.name, &self.database)).await?;
                }
                None => {}
            }
            let key = shard_key(local, sorting_key, &columns_of(local))?;
            let create = sql::create_distributed(table, local, &self.name, &self.database, key);
            self.execute(client, &create).await?;
        }
        Ok(())
    }

    async fn execute(&self, client: &Engine, ddl: &str) -> Result<()> {
        client.execute(ddl, args![]).await.context(format!("on cluster {}: {ddl}", self.name))
    }
}

/// The column a table is sharded by: `device_id` if it is part of the sorting key, else the
/// sorting key's first column (ClickHouse's `sorting_key` is "a, b, c").
fn shard_key<'a>(local: &str, sorting_key: &'a str, columns: &[(&str, &str)]) -> Result<&'a str> {
    let keys: Vec<&str> = sorting_key.split(',').map(str::trim).collect();
    let key = if keys.contains(&"device_id") { "device_id" } else { keys[0] };
    if !columns.iter().any(|(name, _)| *name == key) {
        return Err(StoreError::Cluster(format!(
            "{local}: no column to shard by (sorting key {sorting_key:?}: device_id, or a plain first column)"
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sharded_by_device_else_by_their_first_key_column() {
        let columns = [("device_id", "String"), ("fence_id", "String"), ("written_at_ms", "Int64")];
        assert_eq!(shard_key("p", "device_id, fix_time_ms", &columns).unwrap(), "device_id");
        assert_eq!(shard_key("g", "fence_id, device_id, event_time_ms", &columns).unwrap(), "device_id");
        assert_eq!(shard_key("f", "fence_id", &columns).unwrap(), "fence_id");
        assert_eq!(shard_key("s", "written_at_ms", &columns).unwrap(), "written_at_ms");
        assert!(shard_key("x", "intDiv(written_at_ms, 1000)", &columns).is_err());
    }

    #[test]
    fn cluster_names_are_identifiers() {
        assert!(Cluster::new("fleet_2x1", "db").is_ok());
        assert!(Cluster::new("a b; DROP", "db").is_err());
    }
}
