//! The storage interface against a real ClickHouse: the engine `scripts/test` chose for this run
//! (ClickHouse 18.16 over HTTP, or current ClickHouse embedded through chDB; the test command
//! runs this file on both). Each test works in a database of its own.

use fleetstream_storage::{ClickHouseConfig, PositionRow, Store, StoreError, testing};

fn fresh_config(tag: &str) -> ClickHouseConfig {
    testing::config(&testing::unique_database(&format!("store_{tag}")))
}

fn row(device: &str, fix_ms: i64, lat: f64) -> PositionRow {
    PositionRow {
        event_id: format!("{device}@{fix_ms}"),
        device_id: device.into(),
        fix_time_ms: fix_ms,
        received_at_ms: fix_ms + 1500,
        lat,
        lon: -74.012345678901,
        speed_mps: Some(4.25),
        speed_derived: 0,
        heading_deg: None,
        altitude_m: Some(-3.5),
        accuracy_m: None,
        satellites: Some(11),
        ignition: Some(1),
        odometer_m: None,
        battery_pct: Some(55.0),
        attributes: r#"{"driver":"ann"}"#.into(),
        prev_fix_ms: None,
        distance_m: None,
        kafka_partition: 3,
        kafka_offset: 7,
        heading_derived: 0,
        distance_total_m: 12.5,
        moving: 1,
        h3_cell: 617_733_123_123_123_123,
        fence_ids: vec!["county-36061".into(), "pier-7".into()],
        device_name: "Ann's van".into(),
        fleet: "north".into(),
        device_type: "van".into(),
        late: 0,
        version: fleetstream_storage::version::current(7),
    }
}

#[tokio::test]
async fn migrations_apply_once_and_reopen_is_idempotent() {
    let config = fresh_config("migrate");
    let first = Store::open(&config).await.unwrap();
    assert_eq!(first.database(), config.database);
    // A second process opening the same database applies nothing and succeeds.
    let again = Store::open(&config).await.unwrap();
    let versions: Vec<u32> = again.applied_migrations().await.unwrap().iter().map(|m| m.version).collect();
    let expected: Vec<u32> = fleetstream_schemas::migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);
}

#[tokio::test]
async fn an_edited_migration_stops_startup() {
    let config = fresh_config("edited");
    let store = Store::open(&config).await.unwrap();
    store
        .execute_trusted("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (1, '0001_positions', 42, now())")
        .await
        .unwrap();
    match Store::open(&config).await {
        Err(StoreError::Migration { name, reason }) => {
            assert_eq!(name, "0001_positions");
            assert!(reason.contains("must not be edited"), "{reason}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an edited migration was accepted"),
    }
}

#[tokio::test]
async fn bad_database_names_are_refused_before_any_sql() {
    let config = testing::config("x; DROP DATABASE default");
    assert!(matches!(Store::open(&config).await, Err(StoreError::DatabaseName(_))));
}

#[tokio::test]
async fn positions_round_trip_exactly_and_duplicates_collapse() {
    let store = Store::open(&fresh_config("track")).await.unwrap();
    let rows: Vec<PositionRow> =
        (0..50).map(|i| row("dev-a", 1_607_389_900_000 + i * 1_001, 40.0 + i as f64 * 1e-6)).collect();
    store.insert_positions(&rows).await.unwrap();
    // A redelivered batch: the same rows again.
    store.insert_positions(&rows[10..20]).await.unwrap();
    store.insert_positions(&[row("dev-b", 1_607_389_900_000, 1.0)]).await.unwrap();

    let track = store.track("dev-a", i64::MIN, i64::MAX, 1_000).await.unwrap();
    assert_eq!(track, rows, "same rows, same order, same values, no duplicates");

    let window = store.track("dev-a", rows[5].fix_time_ms, rows[9].fix_time_ms, 1_000).await.unwrap();
    assert_eq!(window, rows[5..9], "from is inclusive, to exclusive");
    assert_eq!(store.track("dev-a", i64::MIN, i64::MAX, 3).await.unwrap().len(), 3, "limit applies");
    assert!(store.track("nobody", i64::MIN, i64::MAX, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn latest_keeps_the_newest_fix_even_when_an_older_one_arrives_later() {
    let store = Store::open(&fresh_config("latest")).await.unwrap();
    store.insert_positions(&[row("dev-a", 2_000_000, 2.0), row("dev-b", 5_000_000, 5.0)]).await.unwrap();
    store.insert_positions(&[row("dev-a", 1_000_000, 1.0)]).await.unwrap();
    let latest = store.latest_positions(100).await.unwrap();
    let summary: Vec<(&str, i64, f64)> = latest.iter().map(|r| (r.device_id.as_str(), r.fix_time_ms, r.lat)).collect();
    assert_eq!(summary, vec![("dev-a", 2_000_000, 2.0), ("dev-b", 5_000_000, 5.0)]);
    assert_eq!(store.latest_positions(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn server_version_answers() {
    let store = Store::open(&fresh_config("version")).await.unwrap();
    let version = store.server_version().await.unwrap();
    assert!(version.chars().next().unwrap().is_ascii_digit(), "{version}");
}

#[tokio::test]
async fn a_refused_insert_is_a_permanent_error_and_a_blip_is_not() {
    let store = Store::open(&fresh_config("refused")).await.unwrap();
    store
        .execute_trusted(
            "CREATE MATERIALIZED VIEW poison_guard ENGINE = Memory AS \
             SELECT throwIf(device_id = 'poison') AS refused FROM positions",
        )
        .await
        .unwrap();
    store.insert_positions(&[row("fine", 1_000, 1.0)]).await.unwrap();
    let err = store.insert_positions(&[row("fine", 2_000, 1.0), row("poison", 1_000, 1.0)]).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("395"), "{err}");
    // A query the server cannot parse is refused for what it is, too.
    let err = store.execute_trusted("SELEKT 1").await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
}

#[tokio::test]
async fn a_decade_of_months_goes_in_despite_the_partition_limit() {
    let store = Store::open(&fresh_config("decade")).await.unwrap();
    let month_ms = 31 * 24 * 3600 * 1000;
    let rows: Vec<PositionRow> = (0..150).map(|m| row("importer", 1_262_304_000_000 + m * month_ms, 1.0)).collect();
    store.insert_positions(&rows).await.unwrap();
    assert_eq!(store.track("importer", i64::MIN, i64::MAX, 1_000).await.unwrap().len(), 150);
}

#[tokio::test]
async fn states_of_thousands_of_long_ids_load_in_chunks() {
    let store = Store::open(&fresh_config("states")).await.unwrap();
    let ids: Vec<String> = (0..6_000).map(|i| format!("{i:06}-{}", "'x\\".repeat(40))).collect();
    let states: Vec<fleetstream_storage::DeviceStateRow> = ids
        .iter()
        .map(|id| fleetstream_storage::DeviceStateRow {
            device_id: id.clone(),
            kafka_partition: 0,
            kafka_offset: 1,
            state: "{}".into(),
            updated_at_ms: 0,
        })
        .collect();
    store.insert_device_states(&states).await.unwrap();
    let loaded = store.device_states(&ids).await.unwrap();
    assert_eq!(loaded.len(), 6_000, "ids with quotes and backslashes, 127 bytes each, all found");
}
