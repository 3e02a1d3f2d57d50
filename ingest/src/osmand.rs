//! The OsmAnd port (default 5055), for the Traccar Client apps and OsmAnd: GET or POST on any
//! path, parameters in the query string or a form body, or the apps' JSON body. Decoding is in
//! [`fleetstream_schemas::osmand`]; here is only HTTP.
//!
//! The apps cannot send an `Authorization` header, so a token may also come as `token=`.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetstream_schemas::FieldError;
use fleetstream_schemas::osmand::{parse_osmand_json, parse_osmand_params};
use fleetstream_schemas::time::now_millis;

use crate::accept::{AppState, Item, accept};
use crate::error::IngestError;
use crate::http::{authorization, read_body};

const PROTOCOL: &str = "osmand";

pub fn router(state: AppState) -> Router {
    Router::new().fallback(osmand).layer(DefaultBodyLimit::disable()).with_state(state)
}

fn bad_request(state: &AppState, error: FieldError, raw: &[u8], received_at_ms: i64) -> IngestError {
    state.reject(PROTOCOL, &error, raw, received_at_ms);
    IngestError { status: StatusCode::BAD_REQUEST, error, retry_after_secs: None }
}

async fn osmand(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let received_at_ms = now_millis();
    let query = query.unwrap_or_default();
    let mut params: Vec<(String, String)> = serde_urlencoded::from_str(&query).map_err(|e| {
        bad_request(
            &state,
            FieldError::new("query", format!("not URL-encoded parameters: {e}")),
            query.as_bytes(),
            received_at_ms,
        )
    })?;
    let query_token = params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone());
    let bytes = read_body(&state, PROTOCOL, body, received_at_ms).await?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
        || bytes.trim_ascii_start().starts_with(b"{");

    let scope = state.authorize(PROTOCOL, authorization(&headers).or(query_token.as_deref()))?;
    let limits = &state.get().limits;
    let items = if is_json {
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            bad_request(&state, FieldError::new("body", format!("is not UTF-8 ({e})")), &bytes, received_at_ms)
        })?;
        let results = parse_osmand_json(text, received_at_ms, limits)
            .map_err(|e| bad_request(&state, e, &bytes, received_at_ms))?;
        results.into_iter().map(|result| Item { raw: &bytes, result }).collect()
    } else {
        if !bytes.is_empty() {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
                bad_request(
                    &state,
                    FieldError::new("body", format!("not a URL-encoded form: {e}")),
                    &bytes,
                    received_at_ms,
                )
            })?;
            params.extend(form);
        }
        let raw = if bytes.is_empty() { query.as_bytes() } else { &bytes[..] };
        vec![Item { raw, result: parse_osmand_params(&params, received_at_ms, limits) }]
    };
    let report = accept(&state, PROTOCOL, scope, items, received_at_ms).await?;
    Ok((report.status(), Json(report)).into_response())
}
