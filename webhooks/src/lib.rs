//! Webhooks: geofence events and alerts POSTed to the receivers users register through the API, signed
//! (HMAC-SHA256 with the webhook's secret), retried with exponential back-off for hours, logged
//! per delivery in ClickHouse, never lost to a restart.
//!
//! [`run`] watches the `webhooks` table and keeps one delivery task per webhook ([`deliver`]),
//! each with its own consumer group, so that a receiver that is down holds back only its own
//! deliveries. Where a webhook may deliver is checked at every attempt ([`target`]).

mod client;
pub mod config;
pub mod deliver;
mod log;
pub mod metrics;
pub mod sign;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use fleetstream_kafka::KafkaConfig;
use fleetstream_storage::{Store, WebhookRow};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use client::HttpClient;
pub use config::WebhookConfig;
use deliver::Shared;
use log::DeliveryLog;
pub use metrics::WebhookMetrics;

/// Most webhooks at once: each is a consumer of the events and alerts topics.
pub const MAX_WEBHOOKS: usize = 100;

/// Delivers to every registered webhook until `shutdown`.
pub async fn run(
    config: WebhookConfig,
    kafka: KafkaConfig,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    fleetstream_kafka::ensure_topics(&kafka, &[kafka.events_topic.as_str(), kafka.alerts_topic.as_str()]).await?;
    let metrics = WebhookMetrics::default();
    if !config.metrics_listen.is_empty() {
        // As for the processor: without the address, deliveries go on.
        match tokio::net::TcpListener::bind(&config.metrics_listen).await {
            Ok(listener) => {
                let render = {
                    let metrics = metrics.clone();
                    move || metrics.render()
                };
                drop(tokio::spawn(fleetstream_processors::metrics::serve_page(
                    "webhooks",
                    listener,
                    render,
                    shutdown.clone(),
                )));
            }
            Err(e) => tracing::warn!(addr = %config.metrics_listen, error = %e,
                "cannot serve webhook metrics; set --webhook-metrics-listen to a free address (empty: none)"),
        }
    }
    let (log, log_task) = DeliveryLog::spawn(store.clone(), metrics.clone());
    let shared = Arc::new(Shared {
        metrics,
        client: HttpClient::new(config.allow_private_networks, config.timeout())?,
        config: config.clone(),
        log,
        fleets: RwLock::new(Arc::new(HashMap::new())),
    });
    if config.allow_private_networks {
        tracing::warn!("webhooks may deliver to private networks (FLEETSTREAM_WEBHOOK_ALLOW_PRIVATE_NETWORKS)");
    }
    let mut running: Running = HashMap::new();
    let mut registry_seen = None;
    loop {
        // All of them every time (at most a hundred rows): a change is never missed, whatever
        // clock wrote its version.
        match store.webhooks().await {
            Ok(webhooks) => {
                // Fleet filters need the registry: their webhooks wait until it is loaded.
                if webhooks.iter().any(|w| !w.fleet.is_empty()) {
                    refresh_fleets(&store, &shared, &mut registry_seen).await;
                }
                reconcile(&mut running, &webhooks, registry_seen.is_some(), &kafka, &shared, &shutdown);
                shared.metrics.set_webhooks(running.len());
            }
            Err(e) => tracing::warn!(error = %e, "could not load webhooks; trying again"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(config.poll()) => {}
        }
    }
    // Every task stops at once (each closes its consumer within a bounded wait).
    for (_, (_, stop, _)) in running.iter() {
        stop.cancel();
    }
    for (_, (_, _, task)) in running.drain() {
        let _ = task.await;
    }
    drop(shared);
    let _ = log_task.await;
    Ok(())
}

/// The delivery task of each webhook: its version, its stop, its handle.
type Running = HashMap<String, (u64, CancellationToken, JoinHandle<()>)>;

/// Starts tasks for new webhooks (those filtered by fleet once `fleets_loaded`), and again for
/// any whose task ended (a consumer that could not be created); stops those of deleted or
/// changed ones without waiting for them: each stops within a bounded wait of its own.
fn reconcile(
    running: &mut Running,
    webhooks: &[WebhookRow],
    fleets_loaded: bool,
    kafka: &KafkaConfig,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) {
    let wanted: HashMap<&str, &WebhookRow> = webhooks
        .iter()
        .filter(|w| fleets_loaded || w.fleet.is_empty())
        .take(MAX_WEBHOOKS)
        .map(|w| (w.webhook_id.as_str(), w))
        .collect();
    let gone: Vec<String> = running
        .iter()
        .filter(|(id, (version, _, task))| {
            task.is_finished() || wanted.get(id.as_str()).is_none_or(|w| w.version != *version)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        if let Some((_, stop, _)) = running.remove(&id) {
            stop.cancel();
            tracing::info!(webhook = %id, "stopped delivering");
        }
    }
    for (id, webhook) in wanted {
        if running.contains_key(id) {
            continue;
        }
        let stop = shutdown.child_token();
        let task = tokio::spawn(deliver::run(webhook.clone(), kafka.clone(), shared.clone(), stop.clone()));
        running.insert(id.to_string(), (webhook.version, stop, task));
    }
}

/// Reloads device → fleet when the registry changed.
async fn refresh_fleets(store: &Store, shared: &Shared, seen: &mut Option<u64>) {
    let Ok(version) = store.registry_version().await else { return };
    if Some(version) == *seen {
        return;
    }
    match store.all_registered_devices().await {
        Ok(devices) => {
            let fleets = devices.into_iter().map(|d| (d.device_id, d.fleet)).collect();
            *shared.fleets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fleets);
            *seen = Some(version);
        }
        Err(e) => tracing::warn!(error = %e, "could not load the registry for fleet filters"),
    }
}

/// A new webhook id: 16 random bytes, hex (unguessable, so that ids say nothing about others).
pub fn new_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
