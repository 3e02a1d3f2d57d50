//! Alert rules on the real broker and ClickHouse: rules managed through the API (bad ones
//! refused, naming the field) are picked up by the processor without a restart; an overspeed,
//! an idle (fleet-scoped: a parked device of the fleet fires nothing) and a dwell alert fire once
//! each, at the fix that completes their duration, and are stored, queryable by device and kind,
//! and produced to the alerts topic as the contract says; a late fix that breaks an episode
//! withdraws its alert and fires the one the corrected history holds.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::sse::Sse;
use support::traffic::put_east_fence;
use support::{Pipeline, eventually};

const BASE: i64 = 1_760_000_000_000;

async fn post(client: &reqwest::Client, pipeline: &Pipeline, fixes: &[Value]) {
    let response = client.post(format!("{}/v1/positions", pipeline.ingest_url)).json(fixes).send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

async fn put(client: &reqwest::Client, url: String, body: Value) -> reqwest::Response {
    client.put(url).json(&body).send().await.unwrap()
}

/// The alerts readers see, `alert_id -> (kind, started, alert time)`.
async fn alerts(client: &reqwest::Client, pipeline: &Pipeline, query: &str) -> BTreeMap<String, (String, i64, i64)> {
    let url = format!("{}/v1/alerts?from={}&to={}{query}", pipeline.api_url, BASE - 60_000, BASE + 3_600_000);
    let body = support::get_json(client, &url).await;
    body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let id = a["alert_id"].as_str().unwrap().to_string();
            (
                id,
                (
                    a["kind"].as_str().unwrap().to_string(),
                    a["started_ms"].as_i64().unwrap(),
                    a["alert_time_ms"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

fn expected(rows: &[(&str, &str, i64, i64)]) -> BTreeMap<String, (String, i64, i64)> {
    rows.iter().map(|(id, kind, started, at)| (id.to_string(), (kind.to_string(), *started, *at))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_fire_once_per_episode_and_late_fixes_correct_them() {
    let pipeline = Pipeline::start("alerts").await;
    put_east_fence(&pipeline.store).await;
    let client = reqwest::Client::new();
    let api = pipeline.api_url.clone();

    // The fleet first: the processor loads the registry in the same poll as the rules.
    for device in ["idler", "parked"] {
        let r = put(&client, format!("{api}/v1/registry/{device}"), json!({"fleet": "yard"})).await;
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    let rules = [
        ("fast", json!({"kind": "overspeed", "speed_mps": 30, "min_secs": 20})),
        ("idle", json!({"kind": "idle", "minutes": 1, "fleet": "yard"})),
        ("dwell", json!({"kind": "dwell", "fence": "east", "minutes": 1, "device": "dweller"})),
    ];
    for (id, body) in &rules {
        let r = put(&client, format!("{api}/v1/alert-rules/{id}"), body.clone()).await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    }
    let again = put(&client, format!("{api}/v1/alert-rules/fast"), rules[0].1.clone()).await;
    assert_eq!(again.status(), 200, "a PUT of an existing rule replaces it");
    let refused = put(&client, format!("{api}/v1/alert-rules/bad"), json!({"kind": "dwell", "minutes": 5})).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(support::named_field(&refused.json().await.unwrap()), "fence");
    let typo = json!({"kind": "dwell", "fence": "eats", "minutes": 5});
    let refused = put(&client, format!("{api}/v1/alert-rules/typo"), typo).await;
    assert_eq!(refused.status(), 400, "a fence that does not exist");
    assert_eq!(support::named_field(&refused.json().await.unwrap()), "fence");
    let listed = support::get_json(&client, &format!("{api}/v1/alert-rules")).await;
    let ids: Vec<&str> = listed["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["dwell", "fast", "idle"]);
    assert_eq!(support::get_json(&client, &format!("{api}/v1/alert-rules/fast")).await["min_secs"], 20.0);

    // No fix yet: the processor's first batch loads the rules with the fences and the registry.
    // A speeder: 0.001° of longitude a second (~84 m/s) from 0 to 40 s. The idle fleet: fixes
    // every 10 s for 2 minutes, standing still, one with the ignition on and one off. A dweller
    // inside the east fence, standing still for 2 minutes.
    let mut fixes = Vec::new();
    for i in 0..=40 {
        fixes.push(
            json!({"device_id": "speeder", "fix_time": BASE + i * 1_000, "lat": 40.6, "lon": -74.2 + 0.001 * i as f64}),
        );
    }
    for i in 0..=12 {
        let t = BASE + i * 10_000;
        fixes.push(json!({"device_id": "idler", "fix_time": t, "lat": 40.61, "lon": -74.2, "ignition": true}));
        fixes.push(json!({"device_id": "parked", "fix_time": t, "lat": 40.62, "lon": -74.2, "ignition": false}));
        fixes.push(json!({"device_id": "dweller", "fix_time": t, "lat": 40.7, "lon": -73.95}));
    }
    post(&client, &pipeline, &fixes).await;
    // The speeder's first fix has no speed: its episode starts at its second, 1 s.
    let fired = expected(&[
        ("dweller|dwell|1760000000000", "dwell", BASE, BASE + 60_000),
        ("idler|idle|1760000000000", "idle", BASE, BASE + 60_000),
        ("speeder|fast|1760000001000", "overspeed", BASE + 1_000, BASE + 21_000),
    ]);
    eventually("the three alerts stored", Duration::from_secs(60), || async {
        let got = alerts(&client, &pipeline, "").await;
        if got == fired { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    let newest =
        support::get_json(&client, &format!("{api}/v1/alerts?from={}&order=desc&limit=1", BASE - 60_000)).await;
    assert_eq!(
        newest["alerts"][0]["alert_id"], "idler|idle|1760000000000",
        "the newest (a tie: by device, descending)"
    );
    let speeder = alerts(&client, &pipeline, "&device=speeder&kind=overspeed").await;
    assert_eq!(speeder.keys().collect::<Vec<_>>(), ["speeder|fast|1760000001000"]);
    assert!(alerts(&client, &pipeline, "&kind=idle&device=parked").await.is_empty(), "the ignition is off");
    let bad_kind = client.get(format!("{api}/v1/alerts?kind=offline")).send().await.unwrap();
    assert_eq!(bad_kind.status(), 400);

    // Pushed: a stream resumed from the topic's start gets the dwell alert (and only it, by
    // kind); a live one opened now gets what the late fix below changes.
    let stream = format!("{api}/v1/stream/alerts");
    let mut from_start = Sse::open(&client, &format!("{stream}?kind=dwell"), Some("a/")).await;
    let dwell = from_start.next(Duration::from_secs(30)).await.expect("the dwell alert, pushed");
    assert_eq!((dwell.event.as_str(), &dwell.data["alert_id"]), ("alert", &json!("dweller|dwell|1760000000000")));
    assert!(dwell.id.as_deref().is_some_and(|id| id.starts_with("a/")), "{:?}", dwell.id);
    assert!(from_start.next(Duration::from_millis(500)).await.is_none(), "nothing of another kind");
    let mut live = Sse::open(&client, &format!("{stream}?device=speeder"), None).await;

    // A late fix: the speeder stood still from 10 to 10.5 s. The episode from 1 s broke at
    // 10.5 s; the one from 11 s reaches 20 s at 31 s.
    post(&client, &pipeline, &[json!({"device_id": "speeder", "fix_time": BASE + 10_500, "lat": 40.6, "lon": -74.19})])
        .await;
    let corrected = expected(&[
        ("dweller|dwell|1760000000000", "dwell", BASE, BASE + 60_000),
        ("idler|idle|1760000000000", "idle", BASE, BASE + 60_000),
        ("speeder|fast|1760000011000", "overspeed", BASE + 11_000, BASE + 31_000),
    ]);
    eventually("the late fix corrects the speeder's alert", Duration::from_secs(60), || async {
        let got = alerts(&client, &pipeline, "").await;
        if got == corrected { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    let pushed = live.until(Duration::from_secs(30), "the correction pushed", |m| m.len() >= 2).await;
    let mut pushed: Vec<(String, bool)> = pushed
        .iter()
        .map(|m| (m.data["alert_id"].as_str().unwrap().to_string(), m.data["retracted"].as_bool().unwrap()))
        .collect();
    pushed.sort();
    assert_eq!(pushed, [("speeder|fast|1760000001000".into(), true), ("speeder|fast|1760000011000".into(), false)]);

    // The topic: every message meets the contract; per alert the newest copy is what readers see.
    let (_, _, newest) = support::week::topic_output(&pipeline.kafka);
    let withdrawn = &newest["speeder|fast|1760000001000"];
    assert_eq!(withdrawn["retracted"], true, "{withdrawn}");
    let live: BTreeMap<String, (String, i64, i64)> = newest
        .iter()
        .filter(|(_, m)| m["retracted"] == false)
        .map(|(id, m)| {
            (
                id.clone(),
                (
                    m["kind"].as_str().unwrap().to_string(),
                    m["started_ms"].as_i64().unwrap(),
                    m["alert_time_ms"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(live, corrected);
    assert_eq!(newest["dweller|dwell|1760000000000"]["fence_id"], "east");
    assert!(newest["speeder|fast|1760000011000"]["speed_mps"].as_f64().unwrap() > 30.0);

    // Deleted: gone from the API; the processor stops evaluating it at its next poll.
    let deleted = client.delete(format!("{api}/v1/alert-rules/idle")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(client.get(format!("{api}/v1/alert-rules/idle")).send().await.unwrap().status(), 404);
    pipeline.stop().await;
}
