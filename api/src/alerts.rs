//! Alert rules and the alerts they fired: `PUT /v1/alert-rules/{id}` creates or replaces a rule,
//! `GET` lists and shows them, `DELETE` removes one; `GET /v1/alerts` reads the alerts stored.
//! The rules are evaluated by the processors (`fleetstream_processors::alerts`), which poll the
//! `alert_rules` table; writes need an admin token once admin tokens are configured (see `auth`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use fleetstream_schemas::AlertKind;
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::{AlertQuery, AlertRow, AlertRuleRow, next_version};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::checks::{MAX_TEXT_BYTES, check_id, check_text};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::params::{Limit, QueryId, TimeRange, id, limit};
use crate::state::ApiState;

/// Rules a deployment can hold: each is looked at for every position of the devices it
/// concerns.
pub const MAX_ALERT_RULES: usize = 1_000;
/// Fastest speed a rule may name, m/s (a fast jet; anything above is a unit mistake).
const MAX_SPEED_MPS: f64 = 1_000.0;
const MAX_MIN_SECS: f64 = 86_400.0;
/// A week.
const MAX_MINUTES: f64 = 10_080.0;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/alert-rules", get(list))
        .route("/v1/alert-rules/{id}", get(get_one).put(put).delete(delete))
}

/// What a client sends for a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub kind: String,
    #[serde(default)]
    pub speed_mps: Option<f64>,
    #[serde(default)]
    pub min_secs: Option<f64>,
    #[serde(default)]
    pub minutes: Option<f64>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub fleet: Option<String>,
    #[serde(default)]
    pub fence: Option<String>,
}

/// A number in `(0 or more, max]`, finite.
fn number(field: &str, value: f64, zero_allowed: bool, max: f64) -> Result<f64, ApiError> {
    let low_ok = if zero_allowed { value >= 0.0 } else { value > 0.0 };
    if !value.is_finite() || !low_ok || value > max {
        let low = if zero_allowed { "from 0" } else { "above 0" };
        return Err(ApiError::bad(field, format!("must be a number {low} to {max}")));
    }
    Ok(value)
}

fn required(field: &str, value: Option<f64>, kind: AlertKind) -> Result<f64, ApiError> {
    value.ok_or_else(|| ApiError::bad(field, format!("is required for a {} rule", kind.as_str())))
}

fn not_for(field: &str, value: Option<f64>, kind: AlertKind) -> Result<(), ApiError> {
    match value {
        Some(_) => Err(ApiError::bad(field, format!("does not apply to a {} rule", kind.as_str()))),
        None => Ok(()),
    }
}

/// The rule row `body` asks for, or the first thing wrong with it (named).
fn rule_row(id: &str, body: RuleBody) -> Result<AlertRuleRow, ApiError> {
    let kind = match AlertKind::parse(&body.kind) {
        Some(kind) => kind,
        None if body.kind == "offline" => {
            return Err(ApiError::bad("kind", "offline rules are not evaluated yet; use overspeed, idle or dwell"));
        }
        None => return Err(ApiError::bad("kind", "must be \"overspeed\", \"idle\" or \"dwell\"")),
    };
    let (speed_mps, duration_ms) = match kind {
        AlertKind::Overspeed => {
            not_for("minutes", body.minutes, kind)?;
            let speed = number("speed_mps", required("speed_mps", body.speed_mps, kind)?, false, MAX_SPEED_MPS)?;
            let secs = number("min_secs", body.min_secs.unwrap_or(0.0), true, MAX_MIN_SECS)?;
            (speed, (secs * 1_000.0).round() as i64)
        }
        AlertKind::Idle | AlertKind::Dwell => {
            not_for("speed_mps", body.speed_mps, kind)?;
            not_for("min_secs", body.min_secs, kind)?;
            let minutes = number("minutes", required("minutes", body.minutes, kind)?, false, MAX_MINUTES)?;
            if minutes * 60.0 < 1.0 {
                return Err(ApiError::bad("minutes", "must be at least 1 second (1/60)"));
            }
            (0.0, (minutes * 60_000.0).round() as i64)
        }
    };
    if kind == AlertKind::Dwell && body.fence.is_none() {
        return Err(ApiError::bad("fence", "is required for a dwell rule"));
    }
    if let Some(device) = &body.device {
        check_id("device", device)?;
    }
    if let Some(fence) = &body.fence {
        check_id("fence", fence)?;
    }
    if let Some(fleet) = &body.fleet {
        check_text("fleet", fleet, MAX_TEXT_BYTES)?;
        if fleet.trim().is_empty() {
            // An empty fleet would scope nothing: a rule for every device, by mistake.
            return Err(ApiError::bad("fleet", "must not be blank (leave it out for every fleet)"));
        }
    }
    Ok(AlertRuleRow {
        rule_id: id.to_string(),
        version: next_version(),
        deleted: 0,
        kind: kind.as_str().to_string(),
        speed_mps,
        duration_ms,
        device_id: body.device.unwrap_or_default(),
        fleet: body.fleet.unwrap_or_default(),
        fence_id: body.fence.unwrap_or_default(),
        updated_at_ms: now_millis(),
    })
}

/// A rule as the API shows it: what was asked, in the units it was asked in.
fn view(row: &AlertRuleRow) -> Value {
    let kind = AlertKind::parse(&row.kind);
    let scope = |value: &str| (!value.is_empty()).then(|| value.to_string());
    let mut rule = json!({
        "id": row.rule_id,
        "kind": row.kind,
        "device": scope(&row.device_id),
        "fleet": scope(&row.fleet),
        "fence": scope(&row.fence_id),
        "version": row.version,
        "updated_at_ms": row.updated_at_ms,
    });
    if kind == Some(AlertKind::Overspeed) {
        rule["speed_mps"] = json!(row.speed_mps);
        rule["min_secs"] = json!(row.duration_ms as f64 / 1_000.0);
    } else {
        rule["minutes"] = json!(row.duration_ms as f64 / 60_000.0);
    }
    rule
}

/// Creates (201) or replaces (200) one rule.
async fn put(
    State(state): State<ApiState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<RuleBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut row = rule_row(&id, body)?;
    // A rule watching a fence that does not exist would never fire: most likely a typo.
    if !row.fence_id.is_empty() && state.store().fence(&row.fence_id).await?.is_none() {
        return Err(ApiError::bad("fence", format!("no fence {:?}; create it first", row.fence_id)));
    }
    row.version = newest_version(&state, row.version).await?;
    let status = match state.store().alert_rule(&id).await? {
        Some(_) => StatusCode::OK,
        None if state.store().alert_rules().await?.len() >= MAX_ALERT_RULES => {
            return Err(ApiError::bad("body", format!("at most {MAX_ALERT_RULES} alert rules; delete one first")));
        }
        None => StatusCode::CREATED,
    };
    state.store().put_alert_rule(&row).await?;
    Ok((status, Json(view(&row))))
}

/// Above every version written, even if this host's clock is behind the one that wrote it:
/// it wins over what it replaces (a delete included), and processors, which reload when the
/// newest version moves, notice it.
async fn newest_version(state: &ApiState, now: u64) -> Result<u64, ApiError> {
    Ok(now.max(state.store().alert_rules_version().await? + 1))
}

async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let rules: Vec<Value> = state.store().alert_rules().await?.iter().map(view).collect();
    Ok(Json(json!({ "rules": rules })))
}

async fn found(state: &ApiState, id: &str) -> Result<AlertRuleRow, ApiError> {
    state.store().alert_rule(id).await?.ok_or_else(|| ApiError::NotFound(format!("no alert rule {id:?}")))
}

async fn get_one(State(state): State<ApiState>, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&found(&state, &id).await?)))
}

async fn delete(State(state): State<ApiState>, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    let row = found(&state, &id).await?;
    let gone = AlertRuleRow { version: newest_version(&state, next_version()).await?, deleted: 1, ..row };
    state.store().put_alert_rule(&gone).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct AlertParams {
    kind: Option<String>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
}

fn alert_view(row: &AlertRow) -> Value {
    json!({
        "alert_id": row.alert_id,
        "rule_id": row.rule_id,
        "kind": row.kind.as_str(),
        "device_id": row.device_id,
        "fence_id": (!row.fence_id.is_empty()).then(|| row.fence_id.clone()),
        "started_ms": row.started_ms,
        "alert_time_ms": row.alert_time_ms,
        "duration_ms": row.duration_ms,
        "speed_mps": row.speed_mps,
        "lat": row.lat,
        "lon": row.lon,
    })
}

/// Alerts fired with `from <= alert time < to`, of one `device` and one `kind` when given,
/// oldest first (`order=desc`: newest first). Defaults: the last 24 h.
pub async fn alerts(
    State(state): State<ApiState>,
    range: TimeRange,
    limit: Limit<limit::Rows>,
    device: QueryId<id::Device>,
    ApiQuery(params): ApiQuery<AlertParams>,
) -> Result<Json<Value>, ApiError> {
    let kind = match params.kind.as_deref() {
        None => "",
        Some(word) => match AlertKind::parse(word) {
            Some(kind) => kind.as_str(),
            None => return Err(ApiError::bad("kind", "must be \"overspeed\", \"idle\" or \"dwell\"")),
        },
    };
    let newest_first = crate::params::newest_first(params.order.as_deref())?;
    let query = AlertQuery {
        from_ms: range.from,
        to_ms: range.to,
        device_id: device.filter(),
        kind,
        limit: limit.get(),
        newest_first,
    };
    let rows = state.store().alerts(&query).await?;
    let alerts: Vec<Value> = rows.iter().map(alert_view).collect();
    Ok(Json(json!({ "count": alerts.len(), "alerts": alerts })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> RuleBody {
        serde_json::from_value(value).unwrap()
    }

    fn refused(value: Value) -> (String, String) {
        let e = rule_row("r", body(value)).unwrap_err();
        (e.field().unwrap_or_default().to_string(), format!("{e:?}"))
    }

    #[test]
    fn each_kind_is_stored_in_milliseconds_and_shown_in_its_own_units() {
        let fast = rule_row("fast", body(json!({"kind": "overspeed", "speed_mps": 25.5, "min_secs": 30}))).unwrap();
        assert_eq!((fast.kind.as_str(), fast.speed_mps, fast.duration_ms), ("overspeed", 25.5, 30_000));
        assert_eq!((view(&fast)["min_secs"].as_f64(), view(&fast).get("minutes")), (Some(30.0), None));
        let idle = rule_row("idle", body(json!({"kind": "idle", "minutes": 2.5, "fleet": "north"}))).unwrap();
        assert_eq!((idle.duration_ms, idle.fleet.as_str()), (150_000, "north"));
        assert_eq!(view(&idle)["minutes"].as_f64(), Some(2.5));
        let dwell = rule_row("d", body(json!({"kind": "dwell", "fence": "port", "minutes": 10}))).unwrap();
        assert_eq!(
            (dwell.fence_id.as_str(), dwell.duration_ms, view(&dwell)["device"].is_null()),
            ("port", 600_000, true)
        );
        let at_once = rule_row("now", body(json!({"kind": "overspeed", "speed_mps": 1}))).unwrap();
        assert_eq!(at_once.duration_ms, 0, "min_secs defaults to 0");
    }

    #[test]
    fn a_bad_rule_is_refused_naming_the_field() {
        assert_eq!(refused(json!({"kind": "speeding"})).0, "kind");
        assert!(refused(json!({"kind": "offline", "minutes": 5})).1.contains("not evaluated yet"));
        assert_eq!(refused(json!({"kind": "overspeed"})).0, "speed_mps");
        assert_eq!(refused(json!({"kind": "overspeed", "speed_mps": 0})).0, "speed_mps");
        assert_eq!(refused(json!({"kind": "overspeed", "speed_mps": 1e9})).0, "speed_mps");
        assert_eq!(refused(json!({"kind": "overspeed", "speed_mps": 5, "min_secs": -1})).0, "min_secs");
        assert_eq!(refused(json!({"kind": "overspeed", "speed_mps": 5, "minutes": 1})).0, "minutes");
        assert_eq!(refused(json!({"kind": "idle"})).0, "minutes");
        assert_eq!(refused(json!({"kind": "idle", "minutes": 20000})).0, "minutes");
        assert_eq!(refused(json!({"kind": "idle", "minutes": 5, "speed_mps": 1})).0, "speed_mps");
        assert_eq!(refused(json!({"kind": "dwell", "minutes": 5})).0, "fence");
        assert_eq!(refused(json!({"kind": "idle", "minutes": 5, "device": " "})).0, "device");
        assert_eq!(refused(json!({"kind": "idle", "minutes": 5, "fleet": "a\u{7}"})).0, "fleet");
        assert_eq!(refused(json!({"kind": "idle", "minutes": 5, "fleet": " "})).0, "fleet");
        assert_eq!(refused(json!({"kind": "idle", "minutes": 1e-9})).0, "minutes");
        assert!(serde_json::from_value::<RuleBody>(json!({"kind": "idle", "minutes": 5, "zone": 1})).is_err());
    }
}
