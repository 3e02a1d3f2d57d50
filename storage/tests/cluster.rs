//! fleetstream on a real ClickHouse cluster (`--clickhouse-cluster`): two ClickHouse 18.16
//! servers, one shard each, with ZooKeeper, as `scripts/test` starts them for its cluster pass
//! (`FLEETSTREAM_TEST_ENGINE=cluster`). On the other engines these tests have nothing to test and
//! return at once.
//!
//! What they prove: migrations run `ON CLUSTER` once, even when two processes connected to
//! different servers start together, and again are a no-op; every row of a device lands on one
//! shard; and `FINAL` through the `Distributed` tables sees one, the newest, copy of each row.

use fleetstream_storage::testing::{self, TestEngine};
use fleetstream_storage::{ClickHouseConfig, PositionRow, Store, version};

/// The configuration of `database` through each server of the cluster, or `None` (with a note)
/// when this run is not on a cluster.
fn on_every_server(tag: &str) -> Option<Vec<ClickHouseConfig>> {
    if testing::engine() != TestEngine::Cluster {
        eprintln!("not a cluster run (FLEETSTREAM_TEST_ENGINE=cluster): nothing to test here");
        return None;
    }
    let database = testing::unique_database(&format!("cluster_{tag}"));
    let urls = testing::cluster_urls();
    assert!(urls.len() >= 2, "the test cluster needs two servers at least: {urls:?}");
    Some(urls.iter().map(|url| testing::on_cluster(url, &database)).collect())
}

fn position(device: &str, fix_ms: i64, lat: f64, offset: i64) -> PositionRow {
    PositionRow {
        kafka_offset: offset,
        version: version::current(offset),
        ..PositionRow::at(device, fix_ms, lat, 4.35)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_different_servers_migrate_once_and_reopening_applies_nothing() {
    let Some(servers) = on_every_server("migrate") else { return };
    let (a, b) = (servers[0].clone(), servers[1].clone());
    let (first, second) = tokio::join!(
        tokio::spawn(async move { Store::open(&a).await }),
        tokio::spawn(async move { Store::open(&b).await })
    );
    let (first, second) =
        (first.unwrap().expect("open through server 1"), second.unwrap().expect("open through server 2"));

    let all: Vec<u32> = fleetstream_schemas::migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    let mut applied = [first.applied_at_open(), second.applied_at_open()].concat();
    applied.sort();
    assert_eq!(applied, all, "each migration applied exactly once, by one of the two processes");
    for store in [&first, &second] {
        let ledger: Vec<u32> = store.applied_migrations().await.unwrap().iter().map(|m| m.version).collect();
        assert_eq!(ledger, all, "the ledger, read through either server");
        let copies: Vec<(u32, u64)> = store
            .query_trusted("SELECT version, count() FROM schema_migrations GROUP BY version HAVING count() > 1")
            .await
            .unwrap();
        assert!(copies.is_empty(), "no migration recorded twice: {copies:?}");
    }

    // Every server has every table: a replicated local one and the Distributed one over it.
    for store in [&first, &second] {
        let tables: Vec<(String, String)> = store
            .query_trusted(
                "SELECT name, engine FROM system.tables WHERE database = currentDatabase() \
                 AND name IN ('positions', 'positions_local', 'device_latest_local', 'schema_migrations') ORDER BY name",
            )
            .await
            .unwrap();
        let tables: Vec<(&str, &str)> = tables.iter().map(|(n, e)| (n.as_str(), e.as_str())).collect();
        assert_eq!(
            tables,
            [
                ("device_latest_local", "ReplicatedReplacingMergeTree"),
                ("positions", "Distributed"),
                ("positions_local", "ReplicatedReplacingMergeTree"),
                ("schema_migrations", "Distributed"),
            ]
        );
    }

    // Idempotent: opening again, through either server, applies nothing and changes nothing.
    for config in &servers {
        let again = Store::open(config).await.expect("reopen");
        assert!(again.applied_at_open().is_empty(), "{:?}", again.applied_at_open());
    }
}

#[tokio::test]
async fn a_devices_rows_live_on_one_shard_and_final_through_distributed_sees_the_newest_copy() {
    let Some(servers) = on_every_server("shards") else { return };
    let store = Store::open(&servers[0]).await.unwrap();
    let devices: Vec<String> = (0..24).map(|d| format!("truck-{d:02}")).collect();
    let fixes = |offset: i64, lat: f64| -> Vec<PositionRow> {
        devices
            .iter()
            .flat_map(|d| (0..5).map(move |i| position(d, 1_700_000_000_000 + i * 10_000, lat, offset)))
            .collect()
    };
    store.insert_positions(&fixes(1, 50.0)).await.unwrap();
    // A redelivered batch (same version) and a correction (newer version) of every row, in
    // separate inserts, so that each shard holds three copies until a merge.
    store.insert_positions(&fixes(1, 50.0)).await.unwrap();
    store.insert_positions(&fixes(2, 51.0)).await.unwrap();

    // On each server, its local tables: every device's rows are on exactly one of them.
    let mut shard_of = std::collections::BTreeMap::new();
    for (shard, config) in servers.iter().enumerate() {
        let local = Store::open(config).await.unwrap();
        for table in ["positions_local", "device_latest_local"] {
            let per_device: Vec<(String, u64)> = local
                .query_trusted(&format!("SELECT device_id, count() FROM {table} GROUP BY device_id"))
                .await
                .unwrap();
            for (device, _) in per_device {
                let first = *shard_of.entry(device.clone()).or_insert(shard);
                assert_eq!(first, shard, "{device}'s rows of {table} are on shards {first} and {shard}");
            }
        }
    }
    assert_eq!(shard_of.len(), devices.len(), "every device stored");
    let used: std::collections::BTreeSet<usize> = shard_of.values().copied().collect();
    assert_eq!(used.len(), servers.len(), "24 devices spread over every shard: {shard_of:?}");

    // Through the Distributed tables, from either server: one copy of each row, the newest.
    for config in &servers {
        let reader = Store::open(config).await.unwrap();
        let (rows, newest): (u64, u64) =
            reader.query_trusted("SELECT count(), countIf(lat = 51.0) FROM positions FINAL").await.unwrap()[0];
        assert_eq!((rows, newest), (120, 120), "24 devices x 5 fixes, each once, corrected");
        let track = reader.track("truck-07", i64::MIN, i64::MAX, 100).await.unwrap();
        assert_eq!(track, fixes(2, 51.0)[35..40], "a device's track: its newest copies, in order");
        let latest = reader.latest_positions(100).await.unwrap();
        assert_eq!(latest.len(), 24, "one latest fix per device");
        assert!(latest.iter().all(|l| l.fix_time_ms == 1_700_000_040_000 && l.lat == 51.0), "{latest:?}");
    }
}

/// The migration lock is one for the whole cluster: taken through one server (here by hand, as a
/// process that is migrating would hold it), it holds back a process that starts through another
/// server until it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_lock_taken_through_one_server_holds_processes_on_another() {
    let Some(servers) = on_every_server("lock") else { return };
    let cluster = testing::required_env("FLEETSTREAM_TEST_CLICKHOUSE_CLUSTER");
    let database = servers[0].database.clone();
    let first = Store::open_migrated_to(&servers[0], 0).await.expect("the database and its ledger");
    first
        .execute_trusted(&format!(
            "CREATE TABLE {database}.schema_migrations_lock ON CLUSTER {cluster} \
             (holder String DEFAULT 'another-host:42') ENGINE = TinyLog"
        ))
        .await
        .unwrap();

    let other = servers[1].clone();
    let opening = tokio::spawn(async move { Store::open(&other).await });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!opening.is_finished(), "a process on the other server migrated while the lock was held");

    first.execute_trusted(&format!("DROP TABLE {database}.schema_migrations_lock ON CLUSTER {cluster}")).await.unwrap();
    let opened = tokio::time::timeout(std::time::Duration::from_secs(60), opening)
        .await
        .expect("it migrates once the lock is released")
        .unwrap()
        .expect("open through the other server");
    let all: Vec<u32> = fleetstream_schemas::migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(opened.applied_at_open(), all);
}
