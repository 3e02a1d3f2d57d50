//! Our extractors, which every handler uses instead of axum's: they read the query, the path and
//! JSON bodies like axum's do, but a request they cannot read is answered with our JSON error
//! naming the input at fault (axum answers plain text), and path ids are checked.
//!
//! - [`ApiQuery`]: query parameters (a parameter given twice is refused, by name);
//! - [`ApiPath`]: path parameters (`%FF` is refused, by name);
//! - [`PathId`]: the `{id}` of a path, checked by [`check_id`];
//! - [`ApiJson`]: a JSON body (413 over its limit, 415 without a JSON content type, 400 naming
//!   the member that does not fit).

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::checks::check_id;
use crate::error::ApiError;

/// Query parameters, deserialised into `T`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query).map_err(|e| {
        let message = e.to_string();
        let field = field_in(&message).unwrap_or("query").to_string();
        if message.starts_with("duplicate field") {
            ApiError::bad(field, "is given more than once")
        } else {
            ApiError::bad(field, message)
        }
    })
}

/// The field a serde error is about, which serde names in backticks ("duplicate field `limit`",
/// "unknown field `colour`, expected one of ..."); `None` for an error about a value.
fn field_in(message: &str) -> Option<&str> {
    let about_a_field = ["duplicate field", "unknown field", "missing field"].iter().any(|p| message.starts_with(p));
    if about_a_field { message.split('`').nth(1) } else { None }
}

/// Path parameters, deserialised into `T`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(path_error(e.kind())),
            // No parameters at all: a route without them asked for some, a bug of ours.
            Err(e) => Err(ApiError::bad("path", e.body_text())),
        }
    }
}

fn path_error(kind: &ErrorKind) -> ApiError {
    match kind {
        ErrorKind::InvalidUtf8InPathParam { key } => ApiError::bad(key.as_str(), "must be UTF-8 once percent-decoded"),
        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
            ApiError::bad(key.as_str(), kind.to_string())
        }
        other => ApiError::bad("path", other.to_string()),
    }
}

/// The `{id}` of a path (a device, fence or registry entry), checked by [`check_id`]: handlers
/// take this, never a bare string.
#[derive(Debug)]
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(id) = ApiPath::<String>::from_request_parts(parts, state).await?;
        check_id("id", &id)?;
        Ok(PathId(id))
    }
}

/// A JSON body, deserialised into `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::NotJson);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(e.body_text()),
            _ => ApiError::bad("body", e.body_text()),
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// `application/json` or any `+json` type, with parameters or not.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// JSON into `T`; an error names the member that does not fit (dotted path), or `body`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let error = e.into_inner();
        // Only a JSON value that does not fit has a place; broken JSON is the body's fault.
        let misfit = error.classify() == serde_json::error::Category::Data;
        let message = without_position(error);
        let field = match (path.as_str(), field_in(&message)) {
            _ if !misfit => "body".to_string(),
            // A missing field is reported at the object that lacks it.
            (".", Some(name)) => name.to_string(),
            (".", None) => "body".to_string(),
            _ => path,
        };
        ApiError::bad(field, message)
    })?;
    deserializer.end().map_err(|e| ApiError::bad("body", without_position(e)))?;
    Ok(value)
}

/// serde_json's message without " at line 1 column 9": the field says where.
fn without_position(e: serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Params {
        limit: Option<String>,
        from: Option<String>,
    }

    fn field_of<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
        result.unwrap_err().field().expect("names a field").to_string()
    }

    #[test]
    fn a_parameter_given_twice_is_named() {
        assert_eq!(parse_query::<Params>("limit=1&from=2").unwrap().limit.as_deref(), Some("1"));
        assert_eq!(field_of(parse_query::<Params>("limit=1&limit=2")), "limit");
        assert_eq!(field_of(parse_query::<Params>("from=1&limit=2&from=3")), "from");
        assert!(parse_query::<Params>("other=1&other=2").is_ok(), "unknown parameters are ignored");
    }

    #[test]
    fn json_errors_name_the_member() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Meta {
            name: String,
            tags: Option<Vec<u8>>,
        }
        assert_eq!(parse_json::<Meta>(br#"{"name":"a"}"#).unwrap().name, "a");
        assert_eq!(field_of(parse_json::<Meta>(br#"{"name":5}"#)), "name");
        assert_eq!(field_of(parse_json::<Meta>(br#"{"name":"a","colour":"red"}"#)), "colour");
        assert_eq!(field_of(parse_json::<Meta>(br#"{"tags":[]}"#)), "name");
        assert_eq!(field_of(parse_json::<Meta>(br#"{"name":"a","tags":[1,300]}"#)), "tags[1]");
        assert_eq!(field_of(parse_json::<Meta>(b"{")), "body");
        assert_eq!(field_of(parse_json::<Meta>(br#"{"name":"a"} trailing"#)), "body");
        assert_eq!(field_of(parse_json::<Meta>(br#""text""#)), "body");
    }

    #[test]
    fn json_content_types() {
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, value.parse().unwrap());
            h
        };
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("Application/JSON; charset=utf-8")));
        assert!(is_json(&headers("application/geo+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn path_errors_name_the_parameter() {
        let e = path_error(&ErrorKind::InvalidUtf8InPathParam { key: "id".into() });
        assert_eq!((e.status().as_u16(), e.field()), (400, Some("id")));
    }

    /// (status, error.field) of `request` to a router whose handlers take our extractors.
    async fn answer(request: axum::http::Request<axum::body::Body>) -> (u16, Option<String>) {
        use axum::routing::{get, put};
        use tower::ServiceExt;
        async fn by_id(PathId(id): PathId, ApiQuery(_): ApiQuery<Params>) -> String {
            id
        }
        async fn put_json(ApiJson(value): ApiJson<serde_json::Value>) -> String {
            value.to_string()
        }
        let app = axum::Router::new()
            .route("/d/{id}", get(by_id))
            .route("/j", put(put_json))
            .layer(axum::extract::DefaultBodyLimit::max(64));
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        if status == 200 {
            return (status, None);
        }
        let body: fleetstream_schemas::ErrorBody = serde_json::from_slice(&bytes).expect("an error in the one shape");
        (status, body.error.field)
    }

    #[tokio::test]
    async fn what_axum_answers_in_plain_text_we_answer_in_json() {
        use axum::body::Body;
        use axum::http::Request;
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let json = |content_type: &str, body: &'static str| {
            Request::put("/j").header("content-type", content_type).body(Body::from(body)).unwrap()
        };
        let field = |f: &str| Some(f.to_string());
        assert_eq!(answer(get("/d/truck-1?limit=5")).await, (200, None));
        assert_eq!(answer(get("/d/%FF")).await, (400, field("id")));
        assert_eq!(answer(get("/d/a%00b")).await, (400, field("id")));
        assert_eq!(answer(get("/d/x?limit=1&limit=2")).await, (400, field("limit")));
        assert_eq!(answer(json("application/json", r#"{"a":1}"#)).await, (200, None));
        assert_eq!(answer(json("text/plain", r#"{"a":1}"#)).await, (415, field("content-type")));
        assert_eq!(answer(json("application/json", "{")).await, (400, field("body")));
        let big = Box::leak(format!("[{}1]", "1,".repeat(64)).into_boxed_str());
        assert_eq!(answer(json("application/json", big)).await, (413, field("body")));
    }

    /// Every handler of this crate takes our extractors: axum's own would answer plain text.
    #[test]
    fn no_handler_takes_an_axum_extractor_that_answers_plain_text() {
        for (path, source) in crate::crate_sources() {
            if path.ends_with("extract.rs") {
                continue;
            }
            let source = source.split("#[cfg(test)]").next().unwrap();
            for extractor in ["): Query<", "): Path<", "): Json<", "JsonRejection", "Form<", "): Bytes", "): String,"] {
                assert!(!source.contains(extractor), "{} takes {extractor:?}: use crate::extract", path.display());
            }
        }
    }
}
