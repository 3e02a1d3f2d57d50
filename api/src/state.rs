//! [`ApiState`]: the one value every handler and middleware shares (settings, tokens, the store,
//! the live caches and the history-query slots). Handler modules take it from here; only
//! `routes` builds the router around it.

use std::sync::Arc;

use fleetstream_storage::Store;
use serde_json::Value;

use crate::auth::ApiTokens;
use crate::config::ApiConfig;
use crate::latest;
use crate::limits::QuerySlots;
use crate::live::LiveCache;

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
}

impl ApiState {
    pub fn new(config: ApiConfig, store: Store, tokens: ApiTokens) -> Self {
        let query_slots = QuerySlots::new(config.max_concurrent_queries as usize);
        let inner =
            Inner { tokens, config, store, summary: LiveCache::default(), latest: LiveCache::default(), query_slots };
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
}
