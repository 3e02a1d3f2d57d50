//! Optional bearer tokens for the query API.
//!
//! Two kinds: reader tokens (analysts, dashboards) and admin tokens (who may change fences, the
//! registry, alert rules and webhooks). Reads need a reader or admin token once reader tokens are configured; writes need an
//! admin token once admin tokens are configured, and otherwise follow the rule for reads. With no
//! tokens at all the API is open and says so at startup. Webhooks hold secrets and send data out:
//! reading them needs what writing needs. Health checks are always open. Tokens are held only as
//! SHA-256 digests.

use std::collections::HashSet;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleetstream_schemas::ErrorBody;
use sha2::{Digest, Sha256};

use crate::state::ApiState;

#[derive(Debug, Default)]
pub struct ApiTokens {
    read: HashSet<[u8; 32]>,
    admin: HashSet<[u8; 32]>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_list(name: &str, list: Option<&str>) -> Result<HashSet<[u8; 32]>, String> {
    let mut set = HashSet::new();
    for token in list.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if token.len() < 16 {
            return Err(format!("{name}: tokens must be at least 16 characters"));
        }
        set.insert(digest(token));
    }
    Ok(set)
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl ApiTokens {
    /// From comma-separated lists (the `--read-tokens` / `--admin-tokens` settings).
    pub fn parse(read: Option<&str>, admin: Option<&str>) -> Result<ApiTokens, String> {
        Ok(ApiTokens { read: parse_list("read tokens", read)?, admin: parse_list("admin tokens", admin)? })
    }

    pub fn is_open(&self) -> bool {
        self.read.is_empty() && self.admin.is_empty()
    }

    /// Whether `token` grants `access`.
    pub fn allows(&self, access: Access, token: Option<&str>) -> bool {
        let digest = token.map(digest);
        let is_admin = digest.is_some_and(|d| self.admin.contains(&d));
        let is_reader = digest.is_some_and(|d| self.read.contains(&d));
        let reads_open = self.read.is_empty();
        match access {
            Access::Read => reads_open || is_reader || is_admin,
            Access::Write if !self.admin.is_empty() => is_admin,
            Access::Write => reads_open || is_reader,
        }
    }
}

fn bearer(request: &Request) -> Option<&str> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return stream_token(request);
    };
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Browsers' EventSource cannot send headers: streams also take the token as `access_token`.
fn stream_token(request: &Request) -> Option<&str> {
    if !request.uri().path().starts_with("/v1/stream/") {
        return None;
    }
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| pair.strip_prefix("access_token=")).filter(|t| !t.contains('%'))
}

/// Middleware over the `/v1` routes.
pub async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    let access =
        if reading && !request.uri().path().starts_with("/v1/webhooks") { Access::Read } else { Access::Write };
    if state.tokens().allows(access, bearer(&request)) {
        return next.run(request).await;
    }
    let message = match (access, bearer(&request)) {
        (_, None) => "a bearer token is required (Authorization: Bearer <token>)",
        (Access::Read, Some(_)) => "the token is not valid for reading",
        (Access::Write, Some(_)) => "the token is not valid for managing fences, the registry, alert rules or webhooks",
    };
    let body = ErrorBody::field("authorization", message);
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "reader-token-0123456789";
    const A: &str = "admin-token-0123456789";

    #[test]
    fn open_without_tokens() {
        let t = ApiTokens::parse(None, None).unwrap();
        assert!(t.is_open());
        assert!(t.allows(Access::Read, None) && t.allows(Access::Write, None));
    }

    #[test]
    fn readers_and_admins() {
        let t = ApiTokens::parse(Some(R), Some(A)).unwrap();
        assert!(!t.allows(Access::Read, None));
        assert!(t.allows(Access::Read, Some(R)) && t.allows(Access::Read, Some(A)));
        assert!(!t.allows(Access::Write, Some(R)), "readers cannot change fences");
        assert!(t.allows(Access::Write, Some(A)));
        assert!(!t.allows(Access::Read, Some("guess-guess-guess-guess")));
    }

    #[test]
    fn admin_tokens_alone_protect_writes_and_leave_reads_open() {
        let t = ApiTokens::parse(None, Some(A)).unwrap();
        assert!(t.allows(Access::Read, None));
        assert!(!t.allows(Access::Write, None));
        assert!(t.allows(Access::Write, Some(A)));
    }

    #[test]
    fn reader_tokens_alone_gate_everything() {
        let t = ApiTokens::parse(Some(R), None).unwrap();
        assert!(!t.allows(Access::Write, None));
        assert!(t.allows(Access::Write, Some(R)));
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(ApiTokens::parse(Some("short"), None).unwrap_err().contains("16"));
    }
}
