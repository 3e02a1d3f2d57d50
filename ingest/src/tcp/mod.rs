//! The TCP ports of hardware trackers: Teltonika ([`teltonika`]) and GT06 ([`gt06`]). Decoding is
//! in `fleetstream-protocols`; here are connections, their bounds and the answers.
//!
//! A frame's records go through the same path as every HTTP request ([`crate::accept`]): valid
//! ones are produced and waited for, invalid ones dead-lettered. The device gets its answer only
//! once the brokers acknowledged every valid record of the frame; when they cannot take them, the
//! connection is closed without an answer, and the device sends the frame again later (a copy of
//! a stored position is stored once: its event id is its IMEI and fix time).
//!
//! Bounds: at most `--tcp-max-connections` per protocol, frames of at most
//! `--tcp-max-frame-bytes`, `--tcp-idle-timeout-secs` of silence between frames and
//! `--tcp-frame-timeout-secs` for a frame once it has begun. At shutdown the ports stop
//! accepting, frames in flight are answered, and idle connections are closed.

pub mod conn;
pub mod gt06;
pub mod teltonika;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fleetstream_schemas::FieldError;
use fleetstream_schemas::dead_letter::Raw;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::accept::{AppState, Item, Request, accept};
use crate::metrics::{ProtocolLabel, TcpRejectLabels};
use crate::registry::Admission;

pub use conn::{Conn, End};

/// Accepts connections on `listener` until `shutdown`, each served by `serve_conn`, then waits
/// (bounded) for the connections to finish their frames in flight.
pub async fn serve<F, Fut>(
    protocol: &'static str,
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    serve_conn: F,
) -> anyhow::Result<()>
where
    F: Fn(Conn, AppState) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max = state.get().config.tcp.tcp_max_connections;
    let permits = Arc::new(Semaphore::new(max));
    tracing::info!(protocol, addr = %listener.local_addr()?, "tracker port listening");
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(protocol, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            reject(&state, protocol, "connections");
            tracing::warn!(protocol, %peer, max, "connection refused: at the connection limit");
            drop(stream);
            continue;
        };
        let metrics = &state.get().metrics.tcp;
        metrics.connections.get_or_create(&ProtocolLabel { protocol }).inc();
        let open = metrics.open.get_or_create(&ProtocolLabel { protocol }).clone();
        open.inc();
        let conn = Conn::new(protocol, stream, &state.get().config.tcp, shutdown.clone());
        let served = serve_conn(conn, state.clone());
        tokio::spawn(async move {
            served.await;
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(state.get().config.produce_timeout_ms) + Duration::from_secs(2);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, permits.acquire_many(all)).await.is_err() {
        tracing::warn!(protocol, "tracker connections still open after the shutdown grace period");
    }
    tracing::info!(protocol, "tracker port stopped");
    Ok(())
}

/// Binds `addr`, or nothing when it is empty.
pub async fn bind(addr: &str) -> anyhow::Result<Option<TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    Ok(Some(listener))
}

/// Counts a refused frame or connection.
pub fn reject(state: &AppState, protocol: &'static str, reason: &'static str) {
    state.get().metrics.tcp.rejects.get_or_create(&TcpRejectLabels { protocol, reason }).inc();
}

/// Whether the device `imei` may go on (`--require-registered`): always without a registry;
/// otherwise a device the registry does not admit is counted and logged, and the caller ends
/// the connection (refusing an unknown device, closing unanswered while the registry is not
/// loaded).
pub fn admit(state: &AppState, protocol: &'static str, imei: &str) -> Result<(), End> {
    let Some(registry) = &state.get().registry else { return Ok(()) };
    let admission = registry.admit(imei);
    match admission {
        Admission::Registered => return Ok(()),
        Admission::Unknown => {
            reject(state, protocol, "unregistered");
            tracing::info!(protocol, imei, "device not in the registry: refused");
        }
        Admission::Unavailable => {
            reject(state, protocol, "registry_unavailable");
            tracing::warn!(protocol, imei, "device registry not loaded yet: closing without an answer");
        }
    }
    Err(End::NotAdmitted(admission))
}

/// Refuses a frame that cannot be read: counted, dead-lettered with the device and the frame;
/// the connection ends.
pub fn refuse_frame(conn: &Conn, state: &AppState, device_id: &str, error: FieldError, bytes: &[u8]) -> End {
    let protocol = conn.protocol;
    let reason = if error.field == "crc" { "crc" } else { "malformed" };
    reject(state, protocol, reason);
    tracing::info!(protocol, device_id, %error, "frame refused; closing the connection");
    let request = Request::new(protocol);
    let ended = End::Malformed(fleetstream_protocols::DecodeError::new(error.field.clone(), error.message.clone()));
    let _ = state.refuse(&request, axum::http::StatusCode::BAD_REQUEST, error, Raw::Frame { device_id, bytes });
    ended
}

/// Takes a frame's positions (valid ones produced and waited for, invalid ones dead-lettered
/// with the frame); true once the valid ones are durable, false when the brokers cannot take
/// them (the frame must not be answered).
pub async fn deliver(
    state: &AppState,
    protocol: &'static str,
    device_id: &str,
    frame: &[u8],
    positions: Vec<Result<fleetstream_schemas::Position, FieldError>>,
) -> bool {
    let metrics = &state.get().metrics.tcp;
    metrics.records.get_or_create(&ProtocolLabel { protocol }).inc_by(positions.len() as u64);
    let request = Request::new(protocol);
    let items =
        positions.into_iter().map(|result| Item { raw: Raw::Frame { device_id, bytes: frame }, result }).collect();
    match accept(state, &request, None, items).await {
        Ok(_) => {
            metrics.acks.get_or_create(&ProtocolLabel { protocol }).inc();
            true
        }
        Err(e) => {
            tracing::warn!(protocol, device_id, error = %e.body.error.message, "frame not durable; closing without an answer");
            false
        }
    }
}
