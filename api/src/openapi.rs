//! `/openapi.json`: the query API described in OpenAPI 3.1 (`openapi.json` beside this file,
//! written by hand). Tests keep it and the routes in step: every route registered in this crate
//! is documented, and every documented operation answers (tests/pipeline.rs).

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every `.route("path", method(..))` in this crate's sources (tests excluded), as
    /// (method, path).
    fn registered_routes() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut routes = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let source = source.split("#[cfg(test)]").next().unwrap();
            for piece in source.split(".route(\"").skip(1) {
                let (route, handlers) = piece.split_once('"').unwrap();
                let handlers = handlers.lines().next().unwrap_or("");
                for method in ["get", "post", "put", "delete"] {
                    if handlers.contains(&format!("{method}(")) || handlers.contains(&format!(".{method}(")) {
                        routes.push((method.to_string(), route.to_string()));
                    }
                }
            }
        }
        routes.sort();
        routes.dedup();
        routes
    }

    #[test]
    fn every_route_is_documented() {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let routes = registered_routes();
        assert!(routes.len() >= 20, "found {routes:?}");
        for (method, path) in &routes {
            assert!(doc["paths"][path][method].is_object(), "{} {path} is not in openapi.json", method.to_uppercase());
        }
        let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, routes.len(), "openapi.json documents operations that no route serves");
    }

    #[test]
    fn references_resolve() {
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
        let text = DOCUMENT;
        for (i, _) in text.match_indices("\"$ref\": \"#/") {
            let start = i + "\"$ref\": \"#/".len();
            let pointer = &text[start..start + text[start..].find('"').unwrap()];
            assert!(doc.pointer(&format!("/{pointer}")).is_some(), "dangling $ref {pointer}");
        }
    }
}
