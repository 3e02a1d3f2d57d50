//! Webhook management: `POST /v1/webhooks` registers a receiver of geofence events, `GET` lists
//! and shows them (never their secrets), `DELETE` removes one, and
//! `GET /v1/webhooks/{id}/deliveries` is its delivery log. Deliveries themselves are made by the
//! webhook deliverer (`fleetstream_webhooks`). Webhooks hold secrets and send data out: every
//! path here needs an admin token once admin tokens are configured (see `auth`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::{WebhookDeliveryRow, WebhookRow, next_version};
use fleetstream_webhooks::MAX_WEBHOOKS;
use fleetstream_webhooks::target::check_url;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::checks::{MAX_TEXT_BYTES, check_id, check_text};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::params::{Limit, limit};
use crate::state::ApiState;

/// Secrets shorter than this are guessable; longer ones are someone's mistake.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 16..=256;
/// The kinds a webhook can ask for: geofence events, and alerts (of any rule).
const KINDS: [&str; 3] = ["enter", "exit", fleetstream_webhooks::deliver::ALERT];

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", get(get_one).delete(delete))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
}

/// What a client sends to register a webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    pub secret: String,
    pub kinds: Vec<String>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub fence: Option<String>,
    #[serde(default)]
    pub fleet: Option<String>,
}

/// The webhook row `new` asks for, or the first thing wrong with it (named).
fn webhook_row(new: NewWebhook) -> Result<WebhookRow, ApiError> {
    check_url(&new.url).map_err(|e| ApiError::bad("url", e))?;
    if !SECRET_BYTES.contains(&new.secret.len()) {
        return Err(ApiError::bad("secret", "must be 16 to 256 bytes"));
    }
    if new.kinds.is_empty() {
        return Err(ApiError::bad("kinds", "must name at least one of \"enter\", \"exit\", \"alert\""));
    }
    let mut kinds: Vec<String> = Vec::new();
    for (i, kind) in new.kinds.iter().enumerate() {
        if !KINDS.contains(&kind.as_str()) {
            return Err(ApiError::bad(format!("kinds[{i}]"), "must be \"enter\", \"exit\" or \"alert\""));
        }
        if !kinds.contains(kind) {
            kinds.push(kind.clone());
        }
    }
    if let Some(device) = &new.device {
        check_id("device", device)?;
    }
    if let Some(fence) = &new.fence {
        check_id("fence", fence)?;
    }
    if let Some(fleet) = &new.fleet {
        check_text("fleet", fleet, MAX_TEXT_BYTES)?;
    }
    Ok(WebhookRow {
        webhook_id: fleetstream_webhooks::new_id(),
        version: next_version(),
        deleted: 0,
        url: new.url,
        secret: new.secret,
        kinds,
        device_id: new.device.unwrap_or_default(),
        fence_id: new.fence.unwrap_or_default(),
        fleet: new.fleet.unwrap_or_default(),
        created_at_ms: now_millis(),
    })
}

/// A webhook as the API shows it: everything but the secret.
fn view(row: &WebhookRow) -> Value {
    let filter = |value: &str| (!value.is_empty()).then(|| value.to_string());
    json!({
        "id": row.webhook_id,
        "url": row.url,
        "kinds": row.kinds,
        "device": filter(&row.device_id),
        "fence": filter(&row.fence_id),
        "fleet": filter(&row.fleet),
        "created_at_ms": row.created_at_ms,
    })
}

async fn create(
    State(state): State<ApiState>,
    ApiJson(new): ApiJson<NewWebhook>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let row = webhook_row(new)?;
    if state.store().webhooks().await?.len() >= MAX_WEBHOOKS {
        return Err(ApiError::bad("body", format!("at most {MAX_WEBHOOKS} webhooks; delete one first")));
    }
    state.store().put_webhook(&row).await?;
    Ok((StatusCode::CREATED, Json(view(&row))))
}

async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let webhooks: Vec<Value> = state.store().webhooks().await?.iter().map(view).collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

async fn found(state: &ApiState, id: &str) -> Result<WebhookRow, ApiError> {
    state.store().webhook(id).await?.ok_or_else(|| ApiError::NotFound(format!("no webhook {id:?}")))
}

async fn get_one(State(state): State<ApiState>, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&found(&state, &id).await?)))
}

async fn delete(State(state): State<ApiState>, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    let row = found(&state, &id).await?;
    // Above the version it deletes even if this host's clock is behind the one that wrote it.
    let gone = WebhookRow { version: next_version().max(row.version + 1), deleted: 1, secret: String::new(), ..row };
    state.store().put_webhook(&gone).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct DeliveryParams {
    status: Option<String>,
}

fn delivery_view(row: &WebhookDeliveryRow) -> Value {
    json!({
        "delivery_id": row.delivery_id,
        "event_id": row.event_id,
        "device_id": row.device_id,
        "status": row.status,
        "attempts": row.attempts,
        "last_status": (row.last_status != 0).then_some(row.last_status),
        "last_error": (!row.last_error.is_empty()).then(|| row.last_error.clone()),
        "first_attempt_ms": row.first_attempt_ms,
        "last_attempt_ms": row.last_attempt_ms,
    })
}

/// The delivery log, newest first; `status` = `retrying`, `delivered` or `dead` filters.
async fn deliveries(
    State(state): State<ApiState>,
    PathId(id): PathId,
    limit: Limit<limit::Rows>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<Value>, ApiError> {
    if let Some(status) = &params.status
        && !["retrying", "delivered", "dead"].contains(&status.as_str())
    {
        return Err(ApiError::bad("status", "must be \"retrying\", \"delivered\" or \"dead\""));
    }
    found(&state, &id).await?;
    let rows = state.store().webhook_deliveries(&id, params.status.as_deref().unwrap_or(""), limit.get()).await?;
    Ok(Json(json!({ "deliveries": rows.iter().map(delivery_view).collect::<Vec<_>>() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(body: Value) -> NewWebhook {
        serde_json::from_value(body).unwrap()
    }

    fn refused(body: Value) -> (String, String) {
        let e = webhook_row(new(body)).unwrap_err();
        (e.field().unwrap_or_default().to_string(), format!("{e:?}"))
    }

    #[test]
    fn a_webhook_is_made_of_what_was_asked() {
        let row = webhook_row(new(json!({
            "url": "https://hooks.example.com/in", "secret": "s3cret-s3cret-s3cret",
            "kinds": ["exit", "enter", "exit"], "fence": "port-a"
        })))
        .unwrap();
        assert_eq!(row.kinds, ["exit", "enter"], "repeats dropped, order kept");
        assert_eq!((row.fence_id.as_str(), row.device_id.as_str()), ("port-a", ""));
        assert_eq!(row.webhook_id.len(), 32);
        assert!(view(&row).get("secret").is_none() && !view(&row).to_string().contains("s3cret"));
    }

    #[test]
    fn bad_webhooks_are_refused_naming_the_field() {
        let base = json!({"url": "https://h.example/x", "secret": "0123456789abcdef", "kinds": ["enter"]});
        let with = |key: &str, value: Value| {
            let mut body = base.clone();
            body[key] = value;
            body
        };
        assert_eq!(refused(with("url", json!("ftp://h.example/"))).0, "url");
        assert_eq!(refused(with("url", json!("https://u:p@h.example/"))).0, "url");
        assert_eq!(refused(with("secret", json!("short"))).0, "secret");
        assert_eq!(refused(with("secret", json!("x".repeat(257)))).0, "secret");
        assert_eq!(refused(with("kinds", json!([]))).0, "kinds");
        assert_eq!(refused(with("kinds", json!(["enter", "teleport"]))).0, "kinds[1]");
        assert!(webhook_row(new(with("kinds", json!(["alert"])))).is_ok(), "alerts can be asked for");
        assert_eq!(refused(with("device", json!(""))).0, "device");
        assert_eq!(refused(with("fleet", json!("a\u{7}b"))).0, "fleet");
        assert!(serde_json::from_value::<NewWebhook>(with("colour", json!("red"))).is_err(), "unknown members refused");
    }
}
