//! Which trackers may connect, for `--require-registered`: the device registry as the TCP ports
//! see it. Trackers cannot send tokens, so the registry (managed through the API, kept in
//! ClickHouse) stands in: a Teltonika IMEI that is not in it is answered `0x00`, a GT06 login is
//! not answered; either way the connection is closed. HTTP and OsmAnd are not concerned: their
//! devices are authorised by tokens.
//!
//! Ingest holds the registered ids in memory, polled as the processors poll theirs: one tiny
//! version query every `--registry-poll-ms`, the whole set reloaded only when the version moved.
//! A handshake never waits for ClickHouse. Memory is bounded by the registry itself (ids only,
//! a few tens of bytes per device, less than each processor holds), which only administrators
//! write: an IMEI that is refused is remembered nowhere, so devices cannot grow it.
//!
//! When ClickHouse cannot be reached: until the registry has loaded once, tracker connections
//! are closed without an answer, which devices take as a network failure and retry (`0x00`
//! would tell a registered device that it is unknown, which nobody knows yet). Once loaded, the
//! last set loaded is kept through an outage: devices registered or removed meanwhile are seen
//! when ClickHouse answers again, and each failed poll logs a warning.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fleetstream_storage::{ClickHouseConfig, Store, StoreError};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where the registry is read from.
pub enum RegistryStore {
    /// A ClickHouse server, opened in the background (and again while it cannot be reached):
    /// ingest serves HTTP whatever its state.
    Connect(ClickHouseConfig),
    /// A store this process has open already (an embedded engine can be opened only once).
    Open(Store),
}

/// What the registry says of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Registered,
    Unknown,
    /// Not loaded yet (ClickHouse not reached since ingest started).
    Unavailable,
}

/// The registered ids, as last loaded. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    ids: watch::Receiver<Option<Arc<HashSet<String>>>>,
}

impl Registry {
    /// Starts polling `store` every `poll` until `shutdown`; `devices` shows how many are loaded.
    pub fn spawn(store: RegistryStore, poll: Duration, devices: Gauge, shutdown: CancellationToken) -> Registry {
        let (loaded, ids) = watch::channel(None);
        tokio::spawn(async move {
            let Some(store) = open(store, poll, &shutdown).await else { return };
            let mut version = None;
            loop {
                match changed(&store, version).await {
                    Ok(Some((new_version, set))) => {
                        tracing::info!(devices = set.len(), "device registry loaded for the tracker ports");
                        devices.set(set.len() as i64);
                        version = Some(new_version);
                        loaded.send_replace(Some(Arc::new(set)));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        error = %e, loaded = version.is_some(),
                        "could not refresh the device registry; keeping what is loaded (trackers are refused until it loads)"
                    ),
                }
                if !pause(poll, &shutdown).await {
                    return;
                }
            }
        });
        Registry { ids }
    }

    pub fn admit(&self, device_id: &str) -> Admission {
        match &*self.ids.borrow() {
            None => Admission::Unavailable,
            Some(ids) if ids.contains(device_id) => Admission::Registered,
            Some(_) => Admission::Unknown,
        }
    }
}

/// The store, once open; `None` when shutdown came first.
async fn open(store: RegistryStore, retry: Duration, shutdown: &CancellationToken) -> Option<Store> {
    let config = match store {
        RegistryStore::Open(store) => return Some(store),
        RegistryStore::Connect(config) => config,
    };
    loop {
        match Store::open(&config).await {
            Ok(store) => return Some(store),
            Err(e) => tracing::warn!(
                error = %e, storage = %config.describe(),
                "cannot read the device registry yet; tracker connections are closed unanswered until it loads"
            ),
        }
        if !pause(retry, shutdown).await {
            return None;
        }
    }
}

/// The registry's version and ids when its version is not `loaded`.
async fn changed(store: &Store, loaded: Option<u64>) -> Result<Option<(u64, HashSet<String>)>, StoreError> {
    let version = store.registry_version().await?;
    if loaded == Some(version) {
        return Ok(None);
    }
    let ids = store.all_registered_devices().await?.into_iter().map(|row| row.device_id).collect();
    Ok(Some((version, ids)))
}

/// Waits `time`; false when shutdown came first.
async fn pause(time: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(time) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_ids_are_admitted_once_loaded() {
        let (loaded, ids) = watch::channel(None);
        let registry = Registry { ids };
        assert_eq!(registry.admit("356307042441013"), Admission::Unavailable);
        loaded.send_replace(Some(Arc::new(HashSet::from(["356307042441013".to_string()]))));
        assert_eq!(registry.admit("356307042441013"), Admission::Registered);
        assert_eq!(registry.admit("356307042441014"), Admission::Unknown);
    }
}
