//! The OsmAnd port (default 5055), for the Traccar Client apps and OsmAnd: GET or POST on any
//! path, parameters in the query string or a form body, or the apps' JSON body. Decoding is in
//! [`fleetstream_schemas::osmand`]; here is only HTTP.
//!
//! The apps cannot send an `Authorization` header, so a token may also come as `token=`, in
//! the query string or in a form body. Either way it is checked before a large body is read.

use std::borrow::Cow;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use fleetstream_schemas::FieldError;
use fleetstream_schemas::dead_letter::Raw;
use fleetstream_schemas::osmand::{parse_osmand_location, parse_osmand_params, split_osmand_json};

use crate::accept::{AppState, IngestReport, Item, Request, accept};
use crate::auth::Scope;
use crate::error::IngestError;
use crate::http::{authorization, authorize_before_body, read_at_most, read_body};

const PROTOCOL: &str = "osmand";

/// Largest form body read before the token in it is checked. A real OsmAnd form is a few
/// hundred bytes; a client without a token cannot make ingest read more than this.
pub const FORM_TOKEN_MAX_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new().fallback(osmand).layer(DefaultBodyLimit::disable()).with_state(state)
}

async fn osmand(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<IngestReport, IngestError> {
    let mut request = Request::new(PROTOCOL);
    let query = query.unwrap_or_default();
    let params = url_params(&state, &request, query.as_bytes(), "query")?;
    let (bytes, scope) = authorized_body(&state, &mut request, &headers, &params, body).await?;
    if is_json(&headers, &bytes) {
        accept_json(&state, &request, scope, &bytes).await
    } else {
        accept_params(&state, &mut request, scope, &query, params, &bytes).await
    }
}

/// The apps' JSON body: each location an item of its own.
async fn accept_json(
    state: &AppState,
    request: &Request,
    scope: Option<&Scope>,
    bytes: &[u8],
) -> Result<IngestReport, IngestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let error = FieldError::new("body", format!("is not UTF-8 ({e})"));
        state.refuse(request, StatusCode::BAD_REQUEST, error, Raw::Json(bytes))
    })?;
    let body = split_osmand_json(text, state.get().config.max_batch_items)
        .map_err(|e| state.refuse_body(request, &e, Raw::Json(bytes)))?;
    let limits = &state.get().limits;
    let items = body
        .locations
        .iter()
        .map(|&location| Item {
            raw: Raw::OsmandLocation { device_id: &body.device_id, location },
            result: parse_osmand_location(&body.device_id, location, request.received_at_ms, limits),
        })
        .collect();
    accept(state, request, scope, items).await
}

/// Parameters, from the query string and a form body together: one item.
async fn accept_params(
    state: &AppState,
    request: &mut Request,
    scope: Option<&Scope>,
    query: &str,
    mut params: Vec<(String, String)>,
    form: &[u8],
) -> Result<IngestReport, IngestError> {
    if !form.is_empty() {
        let form_params = url_params(state, request, form, "body")?;
        if request.token().is_none() {
            // Open ingest read no token, but a form's is still kept out of letters and answers.
            request.present(token_param(&form_params));
        }
        params.extend(form_params);
    }
    let raw: Cow<'_, [u8]> = match (query.is_empty(), form.is_empty()) {
        (_, true) => Cow::Borrowed(query.as_bytes()),
        (true, false) => Cow::Borrowed(form),
        (false, false) => Cow::Owned([query.as_bytes(), b"&", form].concat()),
    };
    let result = parse_osmand_params(&params, request.received_at_ms, &state.get().limits);
    accept(state, request, scope, vec![Item { raw: Raw::Params(&raw), result }]).await
}

/// URL-encoded parameters of the query string or a form body (`field` names which).
fn url_params(
    state: &AppState,
    request: &Request,
    bytes: &[u8],
    field: &str,
) -> Result<Vec<(String, String)>, IngestError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| {
        let error = FieldError::new(field, format!("is not URL-encoded parameters: {e}"));
        state.refuse(request, StatusCode::BAD_REQUEST, error, Raw::Params(bytes))
    })
}

/// The request body, read only once the request is authorised — but for a form body of at
/// most [`FORM_TOKEN_MAX_BYTES`], which may carry the token itself.
async fn authorized_body<'s>(
    state: &'s AppState,
    request: &mut Request,
    headers: &HeaderMap,
    params: &[(String, String)],
    body: Body,
) -> Result<(Bytes, Option<&'s Scope>), IngestError> {
    request.present(authorization(headers).or_else(|| token_param(params)));
    if request.token().is_some() || state.is_open() {
        let scope = authorize_before_body(state, request, &body)?;
        return Ok((read_body(state, request, body).await?, scope));
    }
    let limit = FORM_TOKEN_MAX_BYTES.min(state.get().config.max_body_bytes);
    let Some(bytes) = read_at_most(&mut body.into_data_stream(), limit).await? else {
        let message = format!(
            "a token is required: send Authorization: Bearer <token>, or token= in the query string \
             or in a form body of at most {limit} bytes"
        );
        return Err(state.unauthorized(request, message).closing());
    };
    if !is_json(headers, &bytes) {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        request.present(token_param(&form));
    }
    let scope = state.authorize(request)?;
    Ok((bytes, scope))
}

/// The first `token=` parameter, its name in any case.
fn token_param(params: &[(String, String)]) -> Option<&str> {
    params.iter().find(|(name, _)| name.eq_ignore_ascii_case("token")).map(|(_, value)| value.as_str())
}

/// The apps' JSON body, by its content type or, as some apps send it without one, its first
/// character.
fn is_json(headers: &HeaderMap, bytes: &[u8]) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/json"))
        || bytes.trim_ascii_start().starts_with(b"{")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(query).unwrap()
    }

    #[test]
    fn the_token_parameter_is_found_however_it_is_written() {
        assert_eq!(token_param(&pairs("id=1&token=abc")), Some("abc"));
        assert_eq!(token_param(&pairs("TOKEN=abc&id=1")), Some("abc"));
        assert_eq!(token_param(&pairs("%74oken=abc")), Some("abc"));
        assert_eq!(token_param(&pairs("token=first&token=second")), Some("first"));
        assert_eq!(token_param(&pairs("id=1&tokens=abc")), None);
    }
}
