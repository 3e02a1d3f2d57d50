//! A bound on history queries running at once: beyond it, 429 with `Retry-After` at once rather
//! than a queue that grows until every dashboard times out. A request holds its slot until its
//! answer has been sent: a streamed track queries ClickHouse page after page while its body is
//! being written, long after the handler returned.
//!
//! A reader that stops reading without closing its connection would hold its slot for good
//! (the server stops polling a body whose socket is full, so nothing in the body notices): a
//! watchdog takes the slot back after [`STALLED_AFTER`] without progress and ends that answer.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
        Ok(slot) => next.run(request).await.map(|body| Body::new(HoldingBody::new(body, slot, STALLED_AFTER))),
        Err(_) => ApiError::TooBusy { limit: slots.limit }.into_response(),
    }
}

/// How long an answer may go without its reader taking any of it before its slot is taken
/// back and the answer ended.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

/// A body that holds a query slot as long as it lives and its reader keeps reading.
struct HoldingBody {
    body: Body,
    held: Arc<Held>,
}

/// What the body shares with its watchdog.
struct Held {
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    started: Instant,
    /// Milliseconds after `started` of the last poll of the body.
    polled_at_ms: AtomicU64,
    /// The last poll found the answer itself not ready (a page still being queried): the wait
    /// is the server's, not the reader's.
    waiting_on_answer: AtomicBool,
    stalled: AtomicBool,
}

impl Held {
    /// How long the reader has left a ready answer untaken.
    fn idle(&self) -> Duration {
        if self.waiting_on_answer.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        self.started.elapsed().saturating_sub(Duration::from_millis(self.polled_at_ms.load(Ordering::Relaxed)))
    }
}

impl HoldingBody {
    fn new(body: Body, slot: OwnedSemaphorePermit, stalled_after: Duration) -> HoldingBody {
        let held = Arc::new(Held {
            slot: Mutex::new(Some(slot)),
            started: Instant::now(),
            polled_at_ms: AtomicU64::new(0),
            waiting_on_answer: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
        });
        if !body.is_end_stream() {
            tokio::spawn(watch(Arc::downgrade(&held), stalled_after));
        }
        HoldingBody { body, held }
    }
}

/// Takes the slot back from an answer whose reader stopped reading; ends when the answer does.
async fn watch(held: Weak<Held>, stalled_after: Duration) {
    let every = (stalled_after / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        let Some(held) = held.upgrade() else { return };
        if held.idle() >= stalled_after {
            held.stalled.store(true, Ordering::Relaxed);
            held.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            tracing::warn!(idle = ?held.idle(), "a reader stopped reading its answer; its query slot is taken back");
            return;
        }
    }
}

impl HttpBody for HoldingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let held = &self.held;
        if held.stalled.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(axum::Error::new("the reader stopped reading; answer ended"))));
        }
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        let held = &self.held;
        held.polled_at_ms.store(held.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        held.waiting_on_answer.store(frame.is_pending(), Ordering::Relaxed);
        frame
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

    #[tokio::test]
    async fn a_body_nobody_reads_gives_its_slot_back_and_ends() {
        let slots = QuerySlots::new(1);
        let (_more, rest) = tokio::sync::mpsc::channel::<Result<&'static str, std::io::Error>>(1);
        let slot = slots.slots.clone().try_acquire_owned().unwrap();
        let mut body = HoldingBody::new(Body::from_stream(tokio_stream_of(rest)), slot, Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(slots.slots.available_permits(), 0, "not stalled yet");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(slots.slots.available_permits(), 1, "the slot is taken back");
        let next = futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(matches!(next, Some(Err(_))), "the answer ends with an error");
    }

    #[tokio::test]
    async fn a_reader_that_keeps_reading_keeps_its_slot() {
        let slots = QuerySlots::new(1);
        let (more, rest) = tokio::sync::mpsc::channel::<Result<&'static str, std::io::Error>>(1);
        let slot = slots.slots.clone().try_acquire_owned().unwrap();
        let mut body = HoldingBody::new(Body::from_stream(tokio_stream_of(rest)), slot, Duration::from_millis(200));
        // The reader waits on the answer (its next page is being queried) for longer than the
        // bound: that is not a stall.
        let waiting = tokio::time::timeout(
            Duration::from_millis(400),
            futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
        )
        .await;
        assert!(waiting.is_err(), "nothing to read yet");
        assert_eq!(slots.slots.available_permits(), 0, "a slow answer is not a stalled reader");
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            more.send(Ok("page\n")).await.unwrap();
            let frame = futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            assert!(matches!(frame, Some(Ok(_))));
        }
        assert_eq!(slots.slots.available_permits(), 0, "360 ms of steady reading is not a stall");
    }

    /// The receiver as a stream of chunks.
    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<&'static str, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<&'static str, std::io::Error>> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
