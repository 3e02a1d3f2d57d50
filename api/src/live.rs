//! Live aggregates for operations dashboards, which poll all day, and the shared cache that
//! keeps them (and the latest-positions snapshot) cheap.
//!
//! Every dashboard asks the same question, so the answer is computed at most once per
//! `--live-cache-ms` and shared: the first poller after expiry runs the queries while the others
//! wait for its result (single flight), so ClickHouse sees one query per interval however many
//! dashboards are open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use fleetstream_schemas::time::{format_millis, now_millis};
use fleetstream_storage::{Store, Throughput};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::state::ApiState;

/// A shared value and when it was computed.
pub struct LiveCache<T> {
    slot: Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Default for LiveCache<T> {
    fn default() -> Self {
        LiveCache { slot: Mutex::new(None) }
    }
}

impl<T> LiveCache<T> {
    /// The cached value if younger than `ttl`, else a fresh one from `compute`. A zero `ttl`
    /// disables caching altogether: every caller computes, concurrently.
    pub async fn get_or_compute<F, Fut>(&self, ttl: Duration, compute: F) -> Result<Arc<T>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        if ttl.is_zero() {
            return compute().await.map(Arc::new);
        }
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref()
            && at.elapsed() < ttl
        {
            return Ok(value.clone());
        }
        let value = Arc::new(compute().await?);
        *slot = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

async fn summary_now(store: &Store, config: &ApiConfig) -> Result<Value, ApiError> {
    let now = now_millis();
    let online_since = now - (config.online_window_secs * 1000) as i64;
    let (devices, online, moving) = store.live_device_counts(online_since, config.live_moving_speed_mps).await?;
    let fences: Vec<Value> = store
        .fence_occupancy()
        .await?
        .into_iter()
        .map(|(fence_id, inside)| json!({ "fence_id": fence_id, "inside": inside }))
        .collect();
    let last_minute = store.throughput_since(now - 60_000).await?;
    let per_minute: Vec<Value> = store
        .throughput_per_minute(now - 15 * 60_000)
        .await?
        .iter()
        .map(|t| {
            json!({ "minute": format_millis(t.since_ms), "positions": t.positions,
                    "lag_ms_avg": average_lag(t), "lag_ms_max": t.lag_ms_max })
        })
        .collect();
    Ok(json!({
        "as_of": format_millis(now),
        "online_window_secs": config.online_window_secs,
        "moving_speed_mps": config.live_moving_speed_mps,
        "devices": { "total": devices, "online": online, "moving": moving, "stopped": online - moving, "offline": devices - online },
        "fences": fences,
        // Written to ClickHouse by the processors; lag is from ingest's receipt to the write.
        "pipeline": {
            "positions_last_minute": last_minute.positions,
            "lag_ms_avg": average_lag(&last_minute),
            "lag_ms_max": if last_minute.positions > 0 { Some(last_minute.lag_ms_max) } else { None },
            "per_minute": per_minute,
        },
    }))
}

fn average_lag(t: &Throughput) -> Option<i64> {
    (t.positions > 0).then(|| t.lag_ms_sum / t.positions as i64)
}

/// `GET /v1/live/summary`.
pub async fn summary(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let ttl = Duration::from_millis(state.config().live_cache_ms);
    let value = state.summary_cache().get_or_compute(ttl, || summary_now(state.store(), state.config())).await?;
    Ok(Json((*value).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_pollers_share_one_computation_within_the_ttl() {
        let cache = Arc::new(LiveCache::<Value>::default());
        let computed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, computed) = (cache.clone(), computed.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute(Duration::from_secs(60), || async {
                        computed.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(json!({"n": 1}))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap(), json!({"n": 1}));
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zero_ttl_never_caches() {
        let cache = LiveCache::<Value>::default();
        assert_eq!(*cache.get_or_compute(Duration::ZERO, || async { Ok(json!(1)) }).await.unwrap(), json!(1));
        assert_eq!(*cache.get_or_compute(Duration::ZERO, || async { Ok(json!(2)) }).await.unwrap(), json!(2));
    }

    #[tokio::test]
    async fn an_expired_value_is_recomputed_and_errors_are_not_cached_over_it() {
        let cache = LiveCache::<Value>::default();
        let ttl = Duration::from_millis(30);
        let v = cache.get_or_compute(ttl, || async { Ok(json!(1)) }).await.unwrap();
        assert_eq!(*v, json!(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        let v = cache.get_or_compute(ttl, || async { Ok(json!(2)) }).await.unwrap();
        assert_eq!(*v, json!(2));
        tokio::time::sleep(Duration::from_millis(40)).await;
        let e = cache.get_or_compute(ttl, || async { Err(ApiError::NotFound("x".into())) }).await;
        assert!(e.is_err());
        let v = cache.get_or_compute(Duration::from_secs(60), || async { Ok(json!(3)) }).await.unwrap();
        assert_eq!(*v, json!(2), "a failed refresh does not replace the last good value");
    }
}
