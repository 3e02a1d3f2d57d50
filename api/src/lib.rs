//! fleetstream query API: a thin axum layer over [`fleetstream_storage::Store`].
//!
//! - [`alerts`]: alert rules (create, replace, list, delete) and the alerts they fired;
//! - [`config`]: listen address, result bounds, tokens;
//! - [`auth`]: optional reader and admin tokens;
//! - [`checks`]: the one rule for ids and the one for names, on every path;
//! - [`error`]: JSON errors in the one shape, naming the input at fault; 5xx logging;
//! - [`events`]: stored geofence events, filtered;
//! - [`extract`]: query, path and JSON extractors that answer our errors, not axum's;
//! - [`fences`]: fence management (GeoJSON in and out, validated);
//! - [`health`]: `/healthz` and `/readyz`;
//! - [`limits`]: at most N history queries at once, each holding its slot until answered;
//! - [`latest`]: the latest position of every device, filtered, from a shared snapshot;
//! - [`live`]: live aggregates for dashboards, behind a short shared cache;
//! - [`params`]: time range, `limit` and query ids as extractors, parsed and checked once;
//! - [`registry`]: the device registry (name, fleet, type);
//! - [`views`]: the reader-facing JSON shapes;
//! - [`track`]: a device's track as JSON, GeoJSON or CSV, downsampled on request;
//! - [`stream`]: live positions and events over Server-Sent Events, from the output topics;
//! - [`metrics`]: Prometheus counters at `/metrics`;
//! - [`routes`]: the router, and nothing else;
//! - [`stall`]: connections that stop taking bytes are closed;
//! - [`state`]: [`ApiState`](state::ApiState), what every handler shares.

pub mod alerts;
pub mod auth;
pub mod checks;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod extract;
pub mod fences;
pub mod health;
pub mod latest;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod registry;
pub mod reports;
pub mod routes;
pub mod stall;
pub mod state;
pub mod stream;
pub mod track;
pub mod views;
pub mod webhooks;

use std::time::Duration;

use fleetstream_kafka::KafkaConfig;
use fleetstream_storage::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ApiConfig;

/// Serves the API on `listener` until `shutdown` is cancelled, without live streams.
pub async fn serve(
    config: ApiConfig,
    store: Store,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(config, store, None, listener, shutdown).await
}

/// Serves the API, with live streams from the output topics of `kafka` when given, until
/// `shutdown` is cancelled (which ends every stream).
pub async fn serve_with(
    config: ApiConfig,
    store: Store,
    kafka: Option<KafkaConfig>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tokens = auth::ApiTokens::parse(config.read_tokens.as_deref(), config.admin_tokens.as_deref())
        .map_err(anyhow::Error::msg)?;
    if tokens.is_open() {
        tracing::warn!("no reader or admin tokens configured: the query API is open to anyone who can reach it");
    }
    let metrics = metrics::ApiMetrics::default();
    let streams = kafka.map(|kafka| stream::Streams::start(&config, kafka, metrics.clone(), shutdown.child_token()));
    let listener = stall::StallTimeoutListener { inner: listener, after: Duration::from_secs(config.write_stall_secs) };
    let app = routes::router(state::ApiState::with_streams(config, store, tokens, metrics, streams));
    tracing::info!(addr = %listener.inner.local_addr()?, "api listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    tracing::info!("api stopped");
    Ok(())
}

/// This crate's source files (below `src/`, recursively) and their text: for the tests that
/// keep its module rules.
#[cfg(test)]
pub(crate) fn crate_sources() -> Vec<(std::path::PathBuf, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    assert!(out.iter().any(|(p, _)| p.ends_with("stream/client.rs")), "the walk reaches sub-modules");
    out
}
