//! A bound on history queries running at once: beyond it, 429 with `Retry-After` at once rather
//! than a queue that grows until every dashboard times out. A request holds its slot until its
//! answer has been sent: a streamed track queries ClickHouse page after page while its body is
//! being written, long after the handler returned.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// Middleware: runs the request while holding a slot, or answers 429. The slot moves into the
/// answer's body and is given back when the body has been sent (or the reader went away).
pub async fn limit_queries(State(slots): State<QuerySlots>, request: Request, next: Next) -> Response {
    match slots.slots.clone().try_acquire_owned() {
        Ok(slot) => next.run(request).await.map(|body| Body::new(HoldingBody { body, _slot: slot })),
        Err(_) => ApiError::TooBusy { limit: slots.limit }.into_response(),
    }
}

/// A body that holds a query slot as long as it lives.
struct HoldingBody {
    body: Body,
    _slot: OwnedSemaphorePermit,
}

impl HttpBody for HoldingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
        let done = app.oneshot(request()).await.unwrap();
        assert_eq!(done.status(), StatusCode::OK);
        assert_eq!(done.body().size_hint().exact(), Some(4), "the body keeps its length");
        drop(done);
        assert_eq!(slots.slots.available_permits(), 1, "the slot is given back");
    }

    #[tokio::test]
    async fn a_streamed_answer_holds_its_slot_until_its_body_ends() {
        let slots = QuerySlots::new(1);
        let (more, rest) = tokio::sync::mpsc::channel::<Result<&'static str, std::io::Error>>(1);
        let rest = Arc::new(std::sync::Mutex::new(Some(rest)));
        let app = Router::new()
            .route(
                "/stream",
                get(move || {
                    let rest = rest.lock().unwrap().take().unwrap();
                    async move { Body::from_stream(tokio_stream_of(rest)) }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(slots.clone(), limit_queries));
        let response = app.oneshot(axum::http::Request::get("/stream").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(slots.slots.available_permits(), 0, "the handler returned, the body still streams");
        more.send(Ok("page 1\n")).await.unwrap();
        drop(more);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&body[..], b"page 1\n");
        assert_eq!(slots.slots.available_permits(), 1, "the slot is given back once the stream ended");
    }

    /// The receiver as a stream of chunks.
    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<&'static str, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<&'static str, std::io::Error>> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
