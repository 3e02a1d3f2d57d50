//! Webhooks on the real broker and ClickHouse: events of devices crossing a fence are POSTed to a
//! receiver, signed with the webhook's secret, in order per device; a receiver that answers 503
//! for a while gets everything once it is back (the delivery log shows the retries); a
//! deliverer stopped and started again resumes where it left off; a deleted webhook gets
//! nothing more; a URL that points at a private address is refused at delivery (dead, never
//! retried) unless private networks are allowed; the API never shows a secret; behind a receiver
//! that stays down, deliveries end dead once the retry window has passed and the backlog drains.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use fleetstream_webhooks::WebhookConfig;
use serde_json::{Value, json};
use support::traffic::{fix_json, put_east_fence};
use support::{Pipeline, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "webhook-secret-0123456789";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    delivery: String,
    signature: String,
    body: Bytes,
    event: Value,
}

/// A webhook receiver that records what it accepts and answers 503 while `down`.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
    refused: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    if me.down.load(Ordering::SeqCst) {
                        *me.refused.lock().unwrap() += 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let header =
                        |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                    let event = serde_json::from_slice(&body).expect("a delivery is JSON");
                    me.got.lock().unwrap().push(Received {
                        delivery: header("x-fleetstream-delivery"),
                        signature: header("x-fleetstream-signature"),
                        body,
                        event,
                    });
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// The deliverer, in this process, until stopped.
struct Deliverer {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Deliverer {
    fn start(pipeline: &Pipeline, allow_private_networks: bool) -> Deliverer {
        Deliverer::start_with(pipeline, WebhookConfig { allow_private_networks, ..Default::default() })
    }

    /// With `config`, retried at least every second and polling often (tests wait for both).
    fn start_with(pipeline: &Pipeline, config: WebhookConfig) -> Deliverer {
        let config = WebhookConfig { max_backoff_secs: 1, poll_ms: 200, timeout_secs: 5, ..config };
        let stop = CancellationToken::new();
        let task = tokio::spawn(fleetstream_webhooks::run(
            config,
            pipeline.kafka.clone(),
            pipeline.store.clone(),
            stop.clone(),
        ));
        Deliverer { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the deliverer stops within 30 s")
            .expect("the deliverer did not panic")
            .expect("the deliverer stopped cleanly");
    }
}

/// Fixes `from..to` of `devices` devices, each swinging across the east fence: enter at 5, exit
/// at 10, enter at 15... (three events per device in 0..20, two per ten fixes after).
async fn post_fixes(client: &reqwest::Client, pipeline: &Pipeline, prefix: &str, devices: usize, from: i64, to: i64) {
    let base = 1_760_000_000_000;
    let fixes: Vec<Value> = (from..to)
        .flat_map(|i| (0..devices).map(move |k| fix_json(&format!("{prefix}-{k}"), k, base + i * 1_000, i)))
        .collect();
    let response = client.post(format!("{}/v1/positions", pipeline.ingest_url)).json(&fixes).send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

/// The stored (not retracted) events of devices starting with `prefix`, by event id.
async fn stored_events(pipeline: &Pipeline, prefix: &str) -> BTreeMap<String, Value> {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/geofence-events?from=1759999000000&to=1760100000000&limit=10000", pipeline.api_url);
    let body = support::get_json(&client, &url).await;
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["device_id"].as_str().unwrap().starts_with(prefix))
        .map(|e| (e["event_id"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// Waits until the receiver has every stored event of `prefix` (and they are `expected` many).
async fn wait_all_received(pipeline: &Pipeline, receiver: &Receiver, prefix: &str, expected: usize) {
    eventually("every stored event delivered", Duration::from_secs(60), || async {
        let stored = stored_events(pipeline, prefix).await;
        let got: std::collections::BTreeSet<String> =
            receiver.received().iter().map(|r| r.event["event_id"].as_str().unwrap().to_string()).collect();
        let missing = stored.keys().filter(|id| !got.contains(*id)).count();
        if stored.len() == expected && missing == 0 {
            Ok(())
        } else {
            Err(format!("{} stored of {expected}, {missing} not delivered", stored.len()))
        }
    })
    .await;
}

/// A pipeline with the east fence (before any fix: the processor's first batch loads it), and
/// a receiver, down when `down`, with its URL.
async fn start(tag: &str, down: bool) -> (Pipeline, Receiver, String) {
    let pipeline = Pipeline::start(tag).await;
    put_east_fence(&pipeline.store).await;
    let receiver = Receiver::default();
    receiver.down.store(down, Ordering::SeqCst);
    let url = receiver.start().await;
    (pipeline, receiver, url)
}

async fn create_webhook(client: &reqwest::Client, pipeline: &Pipeline, body: Value) -> reqwest::Response {
    client.post(format!("{}/v1/webhooks", pipeline.api_url)).json(&body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_deliver_every_event_signed_in_order_through_outages_and_restarts() {
    let (pipeline, receiver, url) = start("webhooks", false).await;
    let client = reqwest::Client::new();
    let api = pipeline.api_url.clone();

    let created =
        create_webhook(&client, &pipeline, json!({"url": url, "secret": SECRET, "kinds": ["enter", "exit"]})).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created.get("secret").is_none());
    let listed = support::get_json(&client, &format!("{api}/v1/webhooks")).await;
    assert_eq!(listed["webhooks"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(SECRET), "the API never shows a secret: {listed}");
    let refused = create_webhook(&client, &pipeline, json!({"url": url, "secret": "short", "kinds": ["enter"]})).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(support::named_field(&refused.json().await.unwrap()), "secret");

    let deliverer = Deliverer::start(&pipeline, true);
    // The receiver is down: two devices enter, exit and enter the fence (six events).
    receiver.down.store(true, Ordering::SeqCst);
    post_fixes(&client, &pipeline, "wh", 2, 0, 20).await;
    let deliveries = format!("{api}/v1/webhooks/{id}/deliveries");
    eventually("failed deliveries in the log", Duration::from_secs(60), || async {
        let log = support::get_json(&client, &format!("{deliveries}?status=retrying")).await;
        let retrying = log["deliveries"].as_array().unwrap().clone();
        match retrying.first() {
            Some(d) if d["last_status"] == 503 && d["attempts"].as_u64() >= Some(2) => Ok(()),
            _ => Err(format!("{retrying:?}")),
        }
    })
    .await;
    assert!(*receiver.refused.lock().unwrap() >= 2, "retried while down");
    assert!(receiver.received().is_empty());

    // Back: everything arrives, signed, in order per device.
    receiver.down.store(false, Ordering::SeqCst);
    wait_all_received(&pipeline, &receiver, "wh-", 6).await;
    let got = receiver.received();
    let mut last_time: BTreeMap<String, i64> = BTreeMap::new();
    for r in &got {
        assert_eq!(r.signature, fleetstream_webhooks::sign::signature(SECRET, &r.body), "signed with the secret");
        assert_eq!(r.delivery.len(), 32);
        let (device, at) =
            (r.event["device_id"].as_str().unwrap().to_string(), r.event["event_time_ms"].as_i64().unwrap());
        let before = last_time.insert(device.clone(), at).unwrap_or(i64::MIN);
        assert!(at >= before, "{device}: event at {at} delivered after one at {before}");
    }
    eventually("the log shows every delivery delivered", Duration::from_secs(30), || async {
        let log = support::get_json(&client, &format!("{deliveries}?status=delivered")).await;
        let n = log["deliveries"].as_array().unwrap().len();
        if n >= 6 { Ok(()) } else { Err(format!("{n} delivered")) }
    })
    .await;

    // Stopped and started again: only what came meanwhile (and at most a repeat of the last
    // uncommitted ones, with the same delivery id) arrives.
    deliverer.stop().await;
    let before = receiver.received().len();
    post_fixes(&client, &pipeline, "wh", 2, 20, 30).await;
    let deliverer = Deliverer::start(&pipeline, true);
    wait_all_received(&pipeline, &receiver, "wh-", 10).await;
    let got = receiver.received();
    let mut by_delivery: BTreeMap<&str, &Value> = BTreeMap::new();
    for r in &got {
        if let Some(earlier) = by_delivery.insert(&r.delivery, &r.event) {
            assert_eq!(earlier, &r.event, "a repeated delivery id carries the same event");
        }
    }
    assert!(got.len() - before <= 4 + 6, "resumed, not restarted from the beginning: {} new", got.len() - before);

    // Deleted: nothing more.
    let deleted = client.delete(format!("{api}/v1/webhooks/{id}")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(client.get(format!("{api}/v1/webhooks/{id}")).send().await.unwrap().status(), 404);
    tokio::time::sleep(Duration::from_millis(1_000)).await; // the deliverer polls every 200 ms
    let before = receiver.received().len();
    post_fixes(&client, &pipeline, "wh", 2, 30, 40).await;
    wait_stored_events(&pipeline, "wh-", 14).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // absence window: a delivery would take ms
    assert_eq!(receiver.received().len(), before, "a deleted webhook receives nothing");
    deliverer.stop().await;

    // A private address without the allowance: refused at delivery, dead at once, nothing sent.
    let guarded = Deliverer::start(&pipeline, false);
    let private = create_webhook(
        &client,
        &pipeline,
        json!({"url": url, "secret": SECRET, "kinds": ["enter"], "device": "priv-0"}),
    )
    .await;
    assert_eq!(private.status(), 201, "the URL itself is fine; where it points is judged at delivery");
    let private_id = private.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    post_fixes(&client, &pipeline, "priv", 1, 0, 8).await;
    let dead = eventually("the private delivery dead", Duration::from_secs(60), || async {
        let log = support::get_json(&client, &format!("{api}/v1/webhooks/{private_id}/deliveries?status=dead")).await;
        match log["deliveries"].as_array().unwrap().first() {
            Some(d) => Ok(d.clone()),
            None => Err(format!("{log}")),
        }
    })
    .await;
    assert_eq!(dead["attempts"], 1, "never retried: {dead}");
    assert!(dead["last_error"].as_str().unwrap().contains("not a public address"), "{dead}");
    assert_eq!(receiver.received().len(), before, "nothing reached the private receiver");
    guarded.stop().await;
    pipeline.stop().await;
}

async fn wait_stored_events(pipeline: &Pipeline, prefix: &str, expected: usize) {
    eventually("events stored", Duration::from_secs(60), || async {
        let n = stored_events(pipeline, prefix).await.len();
        if n >= expected { Ok(()) } else { Err(format!("{n} of {expected}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_receiver_that_stays_down_deliveries_end_dead_and_the_backlog_drains() {
    let (pipeline, receiver, url) = start("webhooks_dead", true).await;
    let client = reqwest::Client::new();
    let api = pipeline.api_url.clone();
    let created =
        create_webhook(&client, &pipeline, json!({"url": url, "secret": SECRET, "kinds": ["enter", "exit"]})).await;
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    // A 3 s window.
    let config = WebhookConfig { allow_private_networks: true, retry_hours: 3.0 / 3600.0, ..Default::default() };
    let deliverer = Deliverer::start_with(&pipeline, config);
    post_fixes(&client, &pipeline, "down", 2, 0, 20).await;
    wait_stored_events(&pipeline, "down-", 6).await;
    let dead = eventually("every delivery dead", Duration::from_secs(60), || async {
        let log = support::get_json(&client, &format!("{api}/v1/webhooks/{id}/deliveries?status=dead")).await;
        let dead = log["deliveries"].as_array().unwrap().clone();
        if dead.len() == 6 { Ok(dead) } else { Err(format!("{} dead", dead.len())) }
    })
    .await;
    let attempts: Vec<u64> = dead.iter().map(|d| d["attempts"].as_u64().unwrap()).collect();
    assert!(attempts.iter().any(|&a| a >= 2), "the first was retried within the window: {attempts:?}");
    assert!(
        attempts.iter().filter(|&&a| a == 1).count() >= 4,
        "the backlog then drains, one attempt each: {attempts:?}"
    );
    for d in &dead {
        assert_eq!(d["last_status"], 503, "{d}");
        assert!(d["last_error"].as_str().unwrap().contains("503"), "{d}");
    }
    assert!(receiver.received().is_empty());
    deliverer.stop().await;
    pipeline.stop().await;
}

/// A webhook asking for alerts gets each alert a rule fires (and no geofence event), signed like
/// an event, with the alert's contract body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_are_delivered_to_webhooks_that_ask_for_them() {
    let (pipeline, receiver, url) = start("webhook_alerts", false).await;
    let client = reqwest::Client::new();
    let api = pipeline.api_url.clone();
    let rule = json!({"kind": "dwell", "fence": "east", "minutes": 0.05});
    let put = client.put(format!("{api}/v1/alert-rules/short-stay")).json(&rule).send().await.unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    let created = create_webhook(&client, &pipeline, json!({"url": url, "secret": SECRET, "kinds": ["alert"]})).await;
    assert_eq!(created.status(), 201);
    // No fix yet: the processor's first batch loads the rules with the fences and the registry.
    let deliverer = Deliverer::start(&pipeline, true);
    // Two devices swing into the fence for 5 s each time (fixes 1 s apart): a 3 s stay fires.
    post_fixes(&client, &pipeline, "al", 2, 0, 20).await;
    let got = eventually("the alerts delivered", Duration::from_secs(60), || async {
        let got = receiver.received();
        if got.len() >= 4 { Ok(got) } else { Err(format!("{} received", got.len())) }
    })
    .await;
    for r in &got {
        assert_eq!(r.signature, fleetstream_webhooks::sign::signature(SECRET, &r.body));
        assert_eq!(r.event["rule_id"], "short-stay", "only alerts: {}", r.event);
        assert_eq!(r.event["fence_id"], "east");
        assert!(r.event["duration_ms"].as_i64().unwrap() >= 3_000);
    }
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|r| r.event["alert_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "one delivery per alert: {ids:?}");
    deliverer.stop().await;
    pipeline.stop().await;
}
