//! Health checks for orchestrators: `/healthz` while the process serves, `/readyz` while
//! ClickHouse answers too. Neither needs a token.

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::ApiState;

/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready while ClickHouse answers.
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, &'static str) {
    match state.store().server_version().await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "clickhouse unreachable"),
    }
}
