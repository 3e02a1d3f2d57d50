//! [`ApiState`]: the one value every handler and middleware shares (settings, tokens, the store,
//! the live caches, the history-query slots, the metrics and the live streams). Handler modules
//! take it from here; only `routes` builds the router around it.

use std::sync::Arc;

use fleetstream_storage::Store;
use serde_json::Value;

use crate::auth::ApiTokens;
use crate::config::ApiConfig;
use crate::latest;
use crate::limits::QuerySlots;
use crate::live::LiveCache;
use crate::metrics::ApiMetrics;
use crate::stream::Streams;

/// Everything a handler needs, shared.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    tokens: ApiTokens,
    config: ApiConfig,
    store: Store,
    summary: LiveCache<Value>,
    latest: LiveCache<latest::Snapshot>,
    query_slots: QuerySlots,
    metrics: ApiMetrics,
    streams: Option<Arc<Streams>>,
}

impl ApiState {
    pub fn new(config: ApiConfig, store: Store, tokens: ApiTokens) -> Self {
        ApiState::with_streams(config, store, tokens, ApiMetrics::default(), None)
    }
    /// With live streams (`streams` shares `metrics`).
    pub fn with_streams(
        config: ApiConfig,
        store: Store,
        tokens: ApiTokens,
        metrics: ApiMetrics,
        streams: Option<Streams>,
    ) -> Self {
        let query_slots = QuerySlots::new(config.max_concurrent_queries as usize);
        let (summary, latest, streams) = (LiveCache::default(), LiveCache::default(), streams.map(Arc::new));
        let inner = Inner { tokens, config, store, summary, latest, query_slots, metrics, streams };
        ApiState { inner: Arc::new(inner) }
    }
    pub(crate) fn tokens(&self) -> &ApiTokens {
        &self.inner.tokens
    }
    pub(crate) fn config(&self) -> &ApiConfig {
        &self.inner.config
    }
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
    pub(crate) fn summary_cache(&self) -> &LiveCache<Value> {
        &self.inner.summary
    }
    pub(crate) fn latest_cache(&self) -> &LiveCache<latest::Snapshot> {
        &self.inner.latest
    }
    pub(crate) fn query_slots(&self) -> &QuerySlots {
        &self.inner.query_slots
    }
    pub(crate) fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }
    pub(crate) fn streams(&self) -> Option<&Arc<Streams>> {
        self.inner.streams.as_ref()
    }
}
