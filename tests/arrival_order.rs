//! Results that do not depend on arrival order, on the recorded week (172,679 fixes of 140
//! vessels, NY Harbor) against the 15 county fences, on the real broker and ClickHouse.
//!
//! The week is sent twice into fresh stacks: in time order, and as real networks deliver it —
//! 5% of each vessel's fixes swapped with its next one (a fix arriving late, as after a dead zone
//! or a retried request; only pairs within the lateness bound of each other) and 10% sent again
//! later. Every stored row (distance, speed, heading, odometer, moving, fences), every geofence
//! event and every alert of the second equals the first; and so do those of a processor SIGKILLed in
//! the middle of the second and restarted.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::Position;
use fleetstream_storage::{AlertQuery, Store};
use support::week::{Running, produce, store_with_counties, wait_until_done, week_positions};
use support::{brokers, eventually, query_one, spawn_processor, unique};

/// Swapped pairs are at most this far apart in event time (the processors' default bound is
/// 10 minutes).
const MAX_SWAP_GAP_MS: i64 = 9 * 60 * 1000;

/// A small deterministic generator: the same shuffle on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The week as the network delivers it: (arrival order, fixes swapped, fixes sent again).
fn as_delivered(week: &[Position]) -> (Vec<Position>, usize, usize) {
    let mut rng = Lcg(20_201_201);
    let mut order: Vec<usize> = (0..week.len()).collect();
    let mut by_device: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in week.iter().enumerate() {
        by_device.entry(&p.device_id).or_default().push(i);
    }
    let mut swapped = 0;
    for indices in by_device.values() {
        let mut k = 0;
        while k + 1 < indices.len() {
            let (a, b) = (indices[k], indices[k + 1]);
            if rng.chance(5) && week[b].fix_time_ms - week[a].fix_time_ms < MAX_SWAP_GAP_MS {
                order.swap(a, b);
                swapped += 1;
                k += 2;
            } else {
                k += 1;
            }
        }
    }
    // Arrival keys: each fix in its (swapped) slot; a copy of one in 10% of the slots later.
    let mut arrivals: Vec<(u64, usize)> = order.iter().enumerate().map(|(slot, &i)| (slot as u64 * 2, i)).collect();
    let mut copies = 0;
    for slot in 0..order.len() {
        if rng.chance(10) {
            let later = (slot as u64 + rng.next() % 20_000).min(order.len() as u64) * 2 + 1;
            arrivals.push((later, order[slot]));
            copies += 1;
        }
    }
    arrivals.sort_by_key(|(key, _)| *key);
    (arrivals.into_iter().map(|(_, i)| week[i].clone()).collect(), swapped, copies)
}

#[derive(Debug, PartialEq, clickhouse::Row, serde::Deserialize)]
struct Enriched {
    device_id: String,
    fix_time_ms: i64,
    prev_fix_ms: Option<i64>,
    distance_m: Option<f64>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    distance_total_m: f64,
    moving: u8,
    fence_ids: Vec<String>,
    late: u8,
}

/// Every stored row's enrichment and every event and alert (of `week_rules`), without provenance
/// (offsets differ between arrival orders) or versions.
async fn results(store: &Store) -> (Vec<Enriched>, Vec<String>) {
    let rows: Vec<Enriched> = store
        .query_trusted(
            "SELECT device_id, fix_time_ms, prev_fix_ms, distance_m, speed_mps, heading_deg, distance_total_m, \
             moving, fence_ids, late FROM positions FINAL ORDER BY device_id, fix_time_ms",
        )
        .await
        .unwrap();
    let events = store
        .geofence_events(i64::MIN, i64::MAX, 10_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {:?} by {} at {},{}", e.event_id, e.dwell_ms, e.fix_time_ms, e.lat, e.lon));
    let everything = AlertQuery { from_ms: i64::MIN, to_ms: i64::MAX, limit: 10_000_000, ..Default::default() };
    let alerts =
        store.alerts(&everything).await.unwrap().into_iter().map(|a| {
            format!("alert {} at {} speed {:?} at {},{}", a.alert_id, a.alert_time_ms, a.speed_mps, a.lat, a.lon)
        });
    (rows, events.chain(alerts).collect())
}

fn assert_same(what: &str, got: &(Vec<Enriched>, Vec<String>), expected: &(Vec<Enriched>, Vec<String>)) {
    assert_eq!(got.0.len(), expected.0.len(), "{what}: stored positions");
    let differing: Vec<(&Enriched, &Enriched)> = got.0.iter().zip(&expected.0).filter(|(g, e)| g != e).collect();
    assert!(
        differing.is_empty(),
        "{what}: {} of {} rows differ from the ordered run, e.g. {:#?}",
        differing.len(),
        got.0.len(),
        &differing[..differing.len().min(3)]
    );
    let missing: Vec<&String> = expected.1.iter().filter(|e| !got.1.contains(e)).collect();
    let extra: Vec<&String> = got.1.iter().filter(|e| !expected.1.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} events or alerts missing, {} extra (of {}), e.g. missing {:?}, extra {:?}",
        missing.len(),
        extra.len(),
        expected.1.len(),
        &missing[..missing.len().min(3)],
        &extra[..extra.len().min(3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_and_resent_fixes_give_the_ordered_output() {
    support::init_logs();
    let name = unique("order");
    let week = week_positions();
    let (delivered, swapped, copies) = as_delivered(&week);

    // In time order.
    let ordered_kafka = KafkaConfig::with_topic_suffix(&brokers(), &format!("{name}_ordered"));
    let produced = produce(&ordered_kafka, &week).await;
    let (_, ordered_store) = store_with_counties(&format!("{name}_ordered")).await;
    let running = Running::start(&ordered_kafka, &ordered_store, &format!("ordered-{name}"), 1);
    wait_until_done(&ordered_store, &produced, Duration::from_secs(300)).await;
    running.stop().await;
    let expected = results(&ordered_store).await;
    assert_eq!(expected.0.len(), 172_679);
    assert!(expected.0.iter().all(|r| r.late == 0));
    assert!(expected.1.iter().any(|e| e.starts_with("alert ")), "the week fires alerts to compare");

    // As delivered.
    let kafka = KafkaConfig::with_topic_suffix(&brokers(), &format!("{name}_delivered"));
    let produced = produce(&kafka, &delivered).await;
    let (_, store) = store_with_counties(&format!("{name}_delivered")).await;
    let metrics = fleetstream_processors::Metrics::default();
    let running = Running::start_with_metrics(&kafka, &store, &format!("delivered-{name}"), metrics.clone());
    wait_until_done(&store, &produced, Duration::from_secs(300)).await;
    running.stop().await;
    assert_same("delivered out of order", &results(&store).await, &expected);
    eprintln!(
        "{swapped} fixes delivered late, {copies} sent twice: {} stored rows corrected, {} copies ignored, {} \
         stored flagged late; every row and all {} events equal to the ordered run",
        metrics.corrections.get(),
        metrics.duplicates.get(),
        metrics.late_positions.get(),
        expected.1.len()
    );
    assert!(metrics.corrections.get() > 0, "late fixes corrected the rows after them");

    // As delivered, with the processor killed a third of the way and started again.
    let (kill_config, kill_store) = store_with_counties(&format!("{name}_killed")).await;
    let group = format!("killed-{name}");
    let spawn = || spawn_processor(&kafka, &kill_config, &group, &[("FLEETSTREAM_BATCH_MAX_ROWS", "2000")]);
    let mut child = spawn();
    let third = produced.distinct / 3;
    eventually("the processor a third of the way", Duration::from_secs(300), || async {
        let written: u64 = query_one(&kill_store, "SELECT count() FROM positions").await;
        if written > third { Ok(()) } else { Err(format!("{written} rows written")) }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn();
    wait_until_done(&kill_store, &produced, Duration::from_secs(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_same("delivered out of order, processor killed", &results(&kill_store).await, &expected);
}
