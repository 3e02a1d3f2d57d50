//! The router: which handler serves each path, and the layers around them (history-query slots,
//! tokens, JSON fallbacks, server-error logging). Handlers live in their own modules and take
//! [`ApiState`] from `state`; nothing imports from here but `lib.rs`.

use axum::Router;
use axum::routing::get;

use crate::state::ApiState;
use crate::{
    alerts, auth, dashboard, error, events, fences, health, latest, limits, live, metrics, openapi, registry, reports,
    stream, track, webhooks,
};

pub fn router(state: ApiState) -> Router {
    // History reads go to ClickHouse on every request: bounded, 429 beyond the bound. The live
    // endpoints are served from shared snapshots and need no bound.
    let history = Router::new()
        .route("/v1/devices/{id}/track", get(track::track))
        .route("/v1/geofence-events", get(events::geofence_events))
        .route("/v1/alerts", get(alerts::alerts))
        .merge(reports::routes())
        .layer(axum::middleware::from_fn_with_state(state.query_slots().clone(), limits::limit_queries));
    Router::new()
        .route("/v1/devices/latest", get(latest::latest))
        .route("/v1/live/summary", get(live::summary))
        .route("/v1/stream/positions", get(stream::positions))
        .route("/v1/stream/events", get(stream::events))
        .route("/v1/stream/alerts", get(stream::alerts))
        .merge(history)
        .merge(fences::routes())
        .merge(registry::routes())
        .merge(webhooks::routes())
        .merge(alerts::routes())
        // Everything above needs a token when tokens are configured; health checks below never do.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        // The dashboard page holds no data: it reads the endpoints above with the reader's token.
        .route("/", get(dashboard::page))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/readyz", get(health::readyz))
        // Every answer is JSON, even for paths and methods no route serves (after all routes:
        // the 405 fallback is set on the routes present).
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    /// Handler modules take what they share from `state`, `params` and `extract`: importing
    /// from the router would make the cycle this module was split to end.
    #[test]
    fn no_module_imports_from_the_router() {
        for (path, source) in crate::crate_sources() {
            if path.ends_with("src/lib.rs") || path.ends_with("routes.rs") {
                continue;
            }
            assert!(!source.contains("crate::routes"), "{} imports from routes", path.display());
        }
    }
}
