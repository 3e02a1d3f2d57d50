//! fleetstream ingest: the service devices talk to.
//!
//! A position is answered with 2xx only after the Kafka brokers acknowledged it (acks=all,
//! idempotent producer), so an acknowledged position is never lost; everything else gets a
//! 4xx naming the field (and goes to the dead-letter topic), or a 503 with Retry-After when the
//! brokers cannot take it now.
//!
//! - [`config`]: flags and limits;
//! - [`auth`]: optional device and fleet tokens;
//! - [`http`]: fleetstream's JSON API, health and metrics;
//! - [`osmand`]: the OsmAnd port for the Traccar Client apps;
//! - [`tcp`]: the TCP ports of hardware trackers (Teltonika, GT06);
//! - [`registry`]: which trackers may connect, with `--require-registered`;
//! - [`accept`]: the path every decoded request takes, whatever its protocol;
//! - [`producer`]: produces and waits for the brokers' acknowledgements;
//! - [`metrics`], [`error`].

pub mod accept;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod osmand;
pub mod producer;
pub mod registry;
pub mod tcp;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::IngestConfig;
use fleetstream_kafka::KafkaConfig;
pub use registry::RegistryStore;

/// The sockets ingest serves on.
pub struct Listeners {
    pub http: TcpListener,
    /// The OsmAnd port, when enabled.
    pub osmand: Option<TcpListener>,
    /// The Teltonika port, when enabled.
    pub teltonika: Option<TcpListener>,
    /// The GT06 port, when enabled.
    pub gt06: Option<TcpListener>,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &IngestConfig) -> anyhow::Result<Listeners> {
        let bind = |addr: String| async move {
            TcpListener::bind(&addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
        };
        let http = bind(config.ingest_listen.clone()).await?;
        let osmand = tcp::bind(&config.osmand_listen).await?;
        let teltonika = tcp::bind(&config.teltonika_listen).await?;
        let gt06 = tcp::bind(&config.gt06_listen).await?;
        Ok(Listeners { http, osmand, teltonika, gt06 })
    }
}

/// Runs ingest until `shutdown` is cancelled, then finishes the requests in flight (each waits
/// for its own acknowledgements) and flushes the producer. `registry` is where the device
/// registry is read from with `--require-registered` (required then, unused otherwise).
pub async fn serve(
    config: IngestConfig,
    kafka: KafkaConfig,
    registry: Option<RegistryStore>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = match (config.require_registered, registry) {
        (false, _) => None,
        (true, None) => anyhow::bail!("--require-registered needs ClickHouse to read the device registry from"),
        (true, Some(registry)) => {
            tracing::info!("tracker ports take only registered devices (--require-registered)");
            Some(registry)
        }
    };
    let tokens = config.load_tokens()?;
    if tokens.is_open() {
        tracing::warn!("no device or fleet tokens configured: ingest accepts positions from anyone");
    } else {
        tracing::info!(tokens = tokens.len(), "device and fleet tokens loaded");
    }
    fleetstream_kafka::ensure_topics(&kafka, &[kafka.positions_topic.as_str(), kafka.dlq_topic.as_str()]).await?;
    let producer = producer::PositionProducer::new(&kafka, &config)?;
    let state = accept::AppState::new(config, producer.clone(), tokens, registry, &shutdown);

    tracing::info!(addr = %listeners.http.local_addr()?, "ingest listening");
    let mut servers: Vec<BoxFuture<'static, anyhow::Result<()>>> = Vec::new();
    let http = axum::serve(listeners.http, http::router(state.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    servers.push(Box::pin(async move { Ok(http.await?) }));
    if let Some(listener) = listeners.osmand {
        tracing::info!(addr = %listener.local_addr()?, "OsmAnd listening");
        let osmand = axum::serve(listener, osmand::router(state.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        servers.push(Box::pin(async move { Ok(osmand.await?) }));
    }
    if let Some(listener) = listeners.teltonika {
        let port = tcp::serve(tcp::teltonika::PROTOCOL, listener, state.clone(), shutdown.clone(), |conn, state| {
            tcp::teltonika::serve_conn(conn, state)
        });
        servers.push(Box::pin(port));
    }
    if let Some(listener) = listeners.gt06 {
        let port = tcp::serve(tcp::gt06::PROTOCOL, listener, state.clone(), shutdown.clone(), |conn, state| {
            tcp::gt06::serve_conn(conn, state)
        });
        servers.push(Box::pin(port));
    }
    futures::future::try_join_all(servers).await?;
    producer.flush().await;
    tracing::info!("ingest stopped");
    Ok(())
}
