//! Health checks for orchestrators: `/healthz` while the process serves, `/readyz` while
//! ClickHouse answers too. Neither needs a token.

use axum::extract::State;

use crate::error::ApiError;
use crate::state::ApiState;

/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready while ClickHouse answers; otherwise 503 in the one JSON error shape.
pub async fn readyz(State(state): State<ApiState>) -> Result<&'static str, ApiError> {
    match state.store().server_version().await {
        Ok(_) => Ok("ready"),
        Err(e) => Err(ApiError::Unavailable(format!("ClickHouse does not answer: {e}"))),
    }
}
