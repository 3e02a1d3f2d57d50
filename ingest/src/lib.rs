//! fleetstream ingest: the service devices talk to.
//!
//! A position is answered with 2xx only after the Kafka brokers acknowledged it (acks=all,
//! idempotent producer), so an acknowledged position is never lost; everything else gets a
//! 4xx naming the field, or a 503 with Retry-After when the brokers cannot take it now.
//!
//! - [`config`]: flags and limits;
//! - [`producer`]: produces positions and waits for the brokers' acknowledgements;
//! - [`http`]: the axum routes.

pub mod config;
pub mod http;
pub mod producer;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::IngestConfig;
use fleetstream_kafka::KafkaConfig;

/// Runs ingest on `listener` until `shutdown` is cancelled, then finishes the requests in flight
/// (each waits for its own acknowledgements) and flushes the producer.
pub async fn serve(
    config: IngestConfig,
    kafka: KafkaConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    fleetstream_kafka::ensure_topics(&kafka, &[kafka.positions_topic.as_str()]).await?;
    let producer = producer::PositionProducer::new(&kafka, &config)?;
    let app = http::router(http::AppState::new(config, producer.clone()));
    tracing::info!(addr = %listener.local_addr()?, "ingest listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    producer.flush().await;
    tracing::info!("ingest stopped");
    Ok(())
}
