//! The storage interface against a real ClickHouse: the engine `scripts/test` chose for this run
//! (ClickHouse 18.16 over HTTP, or current ClickHouse embedded through chDB; the test command
//! runs this file on both). Each test works in a database of its own.

use fleetstream_storage::{ClickHouseConfig, PositionRow, Store, StoreError, testing};

fn fresh_config(tag: &str) -> ClickHouseConfig {
    testing::config(&testing::unique_database(&format!("store_{tag}")))
}

fn row(device: &str, fix_ms: i64, lat: f64) -> PositionRow {
    PositionRow {
        event_id: fleetstream_schemas::ids::derived_event_id(device, fix_ms),
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

/// A database as release 0.1 (migrations 0001 to 0005) left it, with rows of those shapes:
/// `months` months of one position a month for device `importer` (written as that release
/// could, in INSERTs of at most 40 months each), two positions of `van` and one geofence event
/// a month. Returns its configuration.
async fn database_of_release_0_1(tag: &str, months: i64) -> ClickHouseConfig {
    let config = fresh_config(tag);
    let old = Store::open_migrated_to(&config, 5).await.unwrap();
    let month_ms = 31 * 24 * 3600 * 1000;
    let position = |device: &str, fix_ms: i64, lat: f64| {
        format!(
            "('{device}@{fix_ms}', '{device}', {fix_ms}, {received}, {lat}, -74.0, 4.5, 0, NULL, NULL, NULL, NULL, \
             NULL, NULL, NULL, '{{}}', NULL, 120.5, 0, {fix_ms}, 0, 99.5, 1, 0, [], '', '', '')",
            received = fix_ms + 1_000
        )
    };
    let insert_positions = |values: Vec<String>| {
        format!(
            "INSERT INTO positions (event_id, device_id, fix_time_ms, received_at_ms, lat, lon, speed_mps, \
             speed_derived, heading_deg, altitude_m, accuracy_m, satellites, ignition, odometer_m, battery_pct, \
             attributes, prev_fix_ms, distance_m, kafka_partition, kafka_offset, heading_derived, distance_total_m, \
             moving, h3_cell, fence_ids, device_name, fleet, device_type) VALUES {}",
            values.join(", ")
        )
    };
    let start = 1_262_304_000_000; // 2010-01-01
    let months: Vec<i64> = (0..months).collect();
    for chunk in months.chunks(40) {
        let values =
            chunk.iter().map(|m| position("importer", start + m * month_ms, 1.0 + *m as f64 / 1000.0)).collect();
        old.execute_trusted(&insert_positions(values)).await.unwrap();
        let events: Vec<String> = chunk
            .iter()
            .map(|m| {
                let at = start + m * month_ms;
                format!(
                    "('importer|pier|enter|{at}', 'importer', 'pier', 'enter', {at}, NULL, {at}, 1.0, -74.0, 0, {m})"
                )
            })
            .collect();
        old.execute_trusted(&format!(
            "INSERT INTO geofence_events (event_id, device_id, fence_id, event_type, event_time_ms, dwell_ms, \
             fix_time_ms, lat, lon, kafka_partition, kafka_offset) VALUES {}",
            events.join(", ")
        ))
        .await
        .unwrap();
    }
    let van = 1_700_000_000_000;
    old.execute_trusted(&insert_positions(vec![position("van", van, 40.5), position("van", van + 60_000, 40.6)]))
        .await
        .unwrap();
    config
}

/// Migration 0006 rebuilds `positions` and `geofence_events` on a database that has data: every
/// row must come through with its values, `device_latest` must keep its rows, and the view that
/// feeds it must work again for rows written after the upgrade.
#[tokio::test]
async fn migration_0006_keeps_the_rows_and_latest_positions_of_an_existing_database() {
    let config = database_of_release_0_1("upgrade", 12).await;
    let store = Store::open(&config).await.expect("the new release opens a database of the old one");

    let counts: (u64, u64, u64) = store
        .query_trusted("SELECT count(), countIf(version = 144115188075855872), countIf(late = 0) FROM positions FINAL")
        .await
        .unwrap()[0];
    assert_eq!(counts, (14, 14, 14), "every position copied once, as a migrated row");
    let van = store.track("van", i64::MIN, i64::MAX, 10).await.unwrap();
    assert_eq!(van.len(), 2);
    assert_eq!((van[1].lat, van[1].distance_m, van[1].distance_total_m, van[1].moving), (40.6, Some(120.5), 99.5, 1));
    let events = store.geofence_events(i64::MIN, i64::MAX, 100).await.unwrap();
    assert_eq!(events.len(), 12, "every event copied");

    let latest = store.latest_positions(10).await.unwrap();
    let summary: Vec<(&str, i64)> = latest.iter().map(|r| (r.device_id.as_str(), r.fix_time_ms)).collect();
    let importer_last = 1_262_304_000_000 + 11 * 31 * 24 * 3600 * 1000;
    assert_eq!(summary, vec![("importer", importer_last), ("van", 1_700_000_060_000)], "device_latest intact");

    // The view feeding device_latest is back: a position written now moves the van on.
    store.insert_positions(&[row("van", 1_700_000_120_000, 40.7)]).await.unwrap();
    let latest = store.latest_positions(10).await.unwrap();
    assert_eq!(latest[1].fix_time_ms, 1_700_000_120_000, "device_latest follows new positions");
}

/// A fleet that has run for more than 100 months (or imported that much history, 40 months a
/// request) has positions in more than 100 monthly partitions. Migration 0006 copies them with
/// one `INSERT ... SELECT`, which ClickHouse squashes into blocks spanning every month and refuses
/// ("Too many partitions for single INSERT block"): the new release cannot open the database,
/// and `fleetstream` does not start, on every attempt.
#[tokio::test]
async fn migration_0006_copies_more_than_100_months_of_positions() {
    let config = database_of_release_0_1("upgrade_decade", 120).await;
    let store = match Store::open(&config).await {
        Ok(store) => store,
        Err(e) => panic!("the new release cannot open a database with 120 months of positions: {e}"),
    };
    let (positions, events): (u64, u64) = (
        store.query_trusted("SELECT count() FROM positions FINAL").await.unwrap()[0],
        store.query_trusted("SELECT count() FROM geofence_events FINAL").await.unwrap()[0],
    );
    assert_eq!((positions, events), (122, 120));
}

/// "Safe to run from every process at once" (storage/src/migrate.rs): an API and processors
/// upgrading together each run the migrations as they start. Migration 0006 copies and swaps
/// tables in steps guarded by "positions lacks version", checked one step at a time, so two
/// processes interleave: one renames the tables while the other is between its check and its
/// own copy or rename. Every process must open the database, and every row must survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_0006_run_by_several_processes_at_once_keeps_every_row() {
    let config = database_of_release_0_1("upgrade_together", 12).await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { Store::open(&config).await.map(|_| ()).map_err(|e| e.to_string()) })
        })
        .collect();
    let mut results = Vec::new();
    for open in opens {
        results.push(open.await.unwrap());
    }
    // What is left, whatever state the tables are in.
    let handle = Store::open_migrated_to(&config, 0).await.unwrap();
    let names: Vec<String> = handle
        .query_trusted("SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE 'positions%'")
        .await
        .unwrap();
    let mut tables: Vec<(String, u64)> = Vec::new();
    for name in names {
        let rows: Vec<u64> = handle.query_trusted(&format!("SELECT count() FROM {name}")).await.unwrap();
        tables.push((name, rows[0]));
    }
    let reopened = Store::open(&config).await.map(|_| ()).map_err(|e| e.to_string());
    assert!(
        results.iter().all(Result::is_ok) && reopened.is_ok(),
        "every process must open the database: {results:#?}; then: {reopened:?}; tables: {tables:?}"
    );
    let store = Store::open(&config).await.unwrap();
    let positions: u64 = store.query_trusted("SELECT count() FROM positions FINAL").await.unwrap()[0];
    let events: u64 = store.query_trusted("SELECT count() FROM geofence_events FINAL").await.unwrap()[0];
    assert_eq!((positions, events), (14, 12), "every row kept; tables: {tables:?}");
}
