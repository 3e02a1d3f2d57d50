//! One stream connection: a task that takes frames from the shared ring (or, while resuming,
//! from its own consumer), filters them and hands the SSE text to the connection through a
//! bounded buffer.
//!
//! - A live client is sent frames at its own pace while it falls behind in its topic's shared
//!   ring. Once it is further behind than the ring holds (`--stream-buffer` messages), it is
//!   dropped: its stream ends (the connection closes once the server gets to write again) and
//!   `stream_clients_dropped` counts it. The shared consumer and the other clients never wait
//!   for it, and it costs no memory of its own: the frames it has yet to take are the ring's.
//! - A resuming client reads the topic with a consumer of its own from the offsets after its id
//!   up to the shared consumer's position when it subscribed, then joins the shared ring. While
//!   catching up it is read at its own pace (at most [`STALLED_AFTER`] without taking a message).
//!   Frames of the ring that it already had from its own consumer are skipped by offset, so the
//!   switch neither repeats nor misses a message.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};

use crate::stream::catchup::{CatchUp, gap_notice};
use crate::stream::fanout::{Fanout, Frame};
use crate::stream::filter::{Filter, Keys};
use crate::stream::id::Cursor;
use crate::stream::{Streams, sse};

/// How often a client that is not taking its messages is checked for having fallen out of the
/// ring.
const LAG_CHECK: Duration = Duration::from_millis(100);

/// How long a resuming client may leave a message untaken before it is dropped.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

/// A client's receiver of its topic's shared ring.
type Ring = broadcast::Receiver<Arc<Frame>>;

/// Why a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed the connection.
    Gone,
    Shutdown,
    /// Too slow: dropped, counted by this reason.
    Dropped(&'static str),
    /// Kafka failed while resuming.
    Failed,
}

pub struct Client {
    pub streams: Arc<Streams>,
    pub fanout: Arc<Fanout>,
    pub filter: Filter,
    pub resume: Option<Cursor>,
    pub out: mpsc::Sender<Bytes>,
}

impl Client {
    /// Serves the stream until the client goes, is dropped or the API shuts down.
    pub async fn run(self) {
        let kind = self.fanout.kind;
        let metrics = self.streams.metrics.clone();
        let end = match self.resume.clone() {
            None => {
                let subscribed = tokio::select! {
                    s = self.fanout.subscribe() => Some(s),
                    () = self.stopped() => None,
                };
                match subscribed {
                    Some((ring, _)) => self.live(ring, None, None).await,
                    None => End::Shutdown,
                }
            }
            Some(from) => {
                metrics.stream_resumed(kind);
                self.resume(from).await
            }
        };
        if let End::Dropped(reason) = end {
            metrics.stream_dropped(kind, reason);
            tracing::info!(stream = kind.label(), reason, "stream client dropped for reading too slowly");
        }
    }

    async fn stopped(&self) {
        tokio::select! {
            () = self.streams.shutdown.cancelled() => {}
            () = self.out.closed() => {}
        }
    }

    /// Frames from the shared ring. `mine`: what a resumed client has had beyond the ring's
    /// position (frames at or before it are skipped), until the ring's position covers it.
    async fn live(&self, mut ring: Ring, mut mine: Option<Cursor>, mut first: Option<Arc<Frame>>) -> End {
        let mut keep_alive = self.keep_alive();
        loop {
            let frame = match first.take() {
                Some(frame) => frame,
                None => tokio::select! {
                    received = ring.recv() => match received {
                        Ok(frame) => frame,
                        Err(RecvError::Lagged(_)) => return End::Dropped("lagged"),
                        Err(RecvError::Closed) => return End::Shutdown,
                    },
                    _ = keep_alive.tick() => {
                        self.keep_alive_now();
                        continue;
                    }
                    () = self.stopped() => return if self.out.is_closed() { End::Gone } else { End::Shutdown },
                },
            };
            let text = match mine.as_mut() {
                None => self.filter.matches(&frame.keys).then(|| frame.sse.clone()),
                Some(had) => {
                    if frame.offset <= had.get(frame.partition) {
                        continue;
                    }
                    had.set(frame.partition, frame.offset);
                    let wanted = self.filter.matches(&frame.keys);
                    if frame.cursor.covers(had) {
                        mine = None;
                        wanted.then(|| frame.sse.clone())
                    } else {
                        let id = || had.max(&frame.cursor).encode(self.fanout.kind);
                        wanted.then(|| sse::message(self.fanout.kind, &id(), &frame.payload()))
                    }
                }
            };
            let Some(text) = text else { continue };
            match self.out.try_send(text) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(text)) => {
                    if let Err(end) = self.send_behind(&ring, text).await {
                        return end;
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return End::Gone,
            }
            self.streams.metrics.stream_sent(self.fanout.kind);
        }
    }

    /// Waits for a slow client to take `text`, as long as it stays within the ring.
    async fn send_behind(&self, ring: &Ring, text: Bytes) -> Result<(), End> {
        let mut check = tokio::time::interval(LAG_CHECK);
        loop {
            tokio::select! {
                permit = self.out.reserve() => {
                    return permit.map(|p| p.send(text)).map_err(|_| End::Gone);
                }
                _ = check.tick() => {
                    if ring.len() > self.fanout.capacity {
                        return Err(End::Dropped("lagged"));
                    }
                }
                () = self.streams.shutdown.cancelled() => return Err(End::Shutdown),
            }
        }
    }

    /// Reads from the client's id with a consumer of its own until it has what the shared ring
    /// had when it subscribed, then joins the ring. The consumer and its resume permit are let
    /// go before the client goes live.
    async fn resume(&self, had: Cursor) -> End {
        match self.catch_up(had).await {
            Ok((ring, had, first)) => self.live(ring, Some(had), first).await,
            Err(end) => end,
        }
    }

    /// The catching up of [`resume`](Self::resume): the ring to join, what the client has had,
    /// and the ring's first frame when it already holds one.
    async fn catch_up(&self, mut had: Cursor) -> Result<(Ring, Cursor, Option<Arc<Frame>>), End> {
        let kind = self.fanout.kind;
        let mut own: Option<(CatchUp, OwnedSemaphorePermit)> = None;
        let mut keep_alive = self.keep_alive();
        loop {
            let (mut ring, target) = tokio::select! {
                s = self.fanout.subscribe() => s,
                () = self.stopped() => return Err(End::Shutdown),
            };
            // Exactly where the ring is: nothing to read. Ahead of it anywhere (an id of a
            // recreated topic, of partitions the topic lacks, or of another API instance ahead
            // of this one): the topic's own consumer checks it against what the topic holds.
            if own.is_none() && had.covers(&target) && target.covers(&had) {
                return Ok((ring, had, None));
            }
            if own.is_none() {
                // One acquire for the whole wait: dropping it would lose the place in the queue.
                let acquire = self.streams.resumes.clone().acquire_owned();
                let permit = self.keeping_alive(&mut keep_alive, acquire).await?.expect("never closed");
                // Reading the topic's partitions and watermarks may take a while on slow brokers.
                let start = CatchUp::start(&self.streams.kafka, &self.fanout.topic, &had);
                let started = self.keeping_alive(&mut keep_alive, start).await?;
                let catch_up = started.map_err(|e| {
                    tracing::warn!(stream = kind.label(), error = format!("{e:#}"), "cannot resume a stream");
                    End::Failed
                })?;
                // Partitions the topic does not have hold nothing to resume.
                had.0.truncate(catch_up.earliest.len());
                if !catch_up.gaps.is_empty() {
                    self.streams.metrics.stream_gap(kind);
                    self.send(sse::notice("gap", &gap_notice(&catch_up.gaps))).await?;
                    // Read from the earliest kept: an offset beyond the end (a recreated topic)
                    // would otherwise skip the messages that are there.
                    for gap in &catch_up.gaps {
                        had.set(gap.partition, gap.earliest - 1);
                    }
                }
                own = Some((catch_up, permit));
            }
            let (catch_up, _) = own.as_ref().expect("set above");
            // A target offset the topic no longer holds cannot be read: nothing up to it is left;
            // nor can a partition the topic no longer has (recreated with fewer).
            let reached = |had: &Cursor, p: usize| {
                had.get(p) >= target.get(p) || catch_up.earliest.get(p).is_none_or(|&low| target.get(p) < low)
            };
            while !(0..target.0.len()).all(|p| reached(&had, p)) {
                // A filter that matches little sends nothing for a long time.
                let read = self.keeping_alive(&mut keep_alive, catch_up.next()).await?;
                let read = read.map_err(|e| {
                    tracing::warn!(stream = kind.label(), error = format!("{e:#}"), "resuming a stream failed");
                    End::Failed
                })?;
                if read.offset <= had.get(read.partition) {
                    continue;
                }
                had.set(read.partition, read.offset);
                if Keys::read(&read.payload).is_ok_and(|keys| self.filter.matches(&keys)) {
                    self.send(sse::message(kind, &had.encode(kind), &sse::one_line(&read.payload))).await?;
                    self.streams.metrics.stream_sent(kind);
                }
            }
            match ring.try_recv() {
                Ok(frame) => return Ok((ring, had, Some(frame))),
                Err(TryRecvError::Empty) => return Ok((ring, had, None)),
                // The ring moved on while this client caught up: catch up further.
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Closed) => return Err(End::Shutdown),
            }
        }
    }

    /// `work` to its end, with keep-alive comments meanwhile (proxies close a connection that
    /// stays silent); `Shutdown` when the client goes or the API stops first.
    async fn keeping_alive<T>(
        &self,
        keep_alive: &mut tokio::time::Interval,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, End> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = keep_alive.tick() => self.keep_alive_now(),
                () = self.stopped() => return Err(End::Shutdown),
            }
        }
    }

    /// Ticks every keep-alive period, the first one period from now.
    fn keep_alive(&self) -> tokio::time::Interval {
        let every = self.streams.keep_alive;
        tokio::time::interval_at(tokio::time::Instant::now() + every, every)
    }

    /// A keep-alive comment, unless the client's buffer is full (then it has messages to take).
    fn keep_alive_now(&self) {
        let _ = self.out.try_send(Bytes::from_static(sse::KEEP_ALIVE));
    }

    /// Sends at the client's pace, for at most [`STALLED_AFTER`].
    async fn send(&self, text: Bytes) -> Result<(), End> {
        tokio::select! {
            sent = tokio::time::timeout(STALLED_AFTER, self.out.send(text)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Gone),
                Err(_) => Err(End::Dropped("stalled")),
            },
            () = self.streams.shutdown.cancelled() => Err(End::Shutdown),
        }
    }
}
