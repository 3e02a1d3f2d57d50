//! A bound on history queries running at once: beyond it, 429 with `Retry-After` at once rather
//! than a queue that grows until every dashboard times out.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Query slots, shared by every request of one API process.
#[derive(Clone)]
pub struct QuerySlots {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl QuerySlots {
    pub fn new(limit: usize) -> QuerySlots {
        QuerySlots { slots: Arc::new(Semaphore::new(limit)), limit }
    }
}

/// Middleware: runs the request while holding a slot, or answers 429.
pub async fn limit_queries(State(slots): State<QuerySlots>, request: Request, next: Next) -> Response {
    match slots.slots.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::TooBusy { limit: slots.limit }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn beyond_the_limit_answers_429_with_retry_after() {
        let slots = QuerySlots::new(1);
        let app = Router::new()
            .route("/q", get(|| async { "done" }))
            .layer(axum::middleware::from_fn_with_state(slots.clone(), limit_queries));
        let request = || axum::http::Request::get("/q").body(Body::empty()).unwrap();

        let held = slots.slots.clone().try_acquire_owned().unwrap(); // a query in flight
        let busy = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(busy.headers()["retry-after"], "1");
        drop(held);
        assert_eq!(app.oneshot(request()).await.unwrap().status(), StatusCode::OK);
        assert_eq!(slots.slots.available_permits(), 1, "the slot is given back");
    }
}
