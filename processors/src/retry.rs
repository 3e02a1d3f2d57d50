//! Retrying storage and broker calls: transient failures until they pass, permanent ones never.
//!
//! A processor must neither drop a batch nor exit because ClickHouse or Kafka blinked: it waits,
//! with exponential back-off (200 ms doubling to 10 s), and gives up only when stopping, in which
//! case nothing is acknowledged and the messages are re-delivered. But a request that the
//! database or broker refused for what it *is* (a value it cannot take, a block over a limit)
//! would fail the same way forever and stop the partition for every device behind it: such a
//! failure is handed back at once, for the caller to isolate and set aside ([`write_isolating`]).

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use fleetstream_storage::StoreError;
use tokio_util::sync::CancellationToken;

/// A failure that knows whether retrying the same request can help.
pub trait Failure: std::fmt::Display {
    fn is_permanent(&self) -> bool;
}

impl Failure for StoreError {
    fn is_permanent(&self) -> bool {
        StoreError::is_permanent(self)
    }
}

/// Called on each transient failure before waiting (for metrics).
pub type OnRetry<'a> = &'a (dyn Fn() + Sync);

/// Runs `op` until it succeeds (`Some(Ok)`), fails permanently (`Some(Err)`), or shutdown is
/// asked for while it is failing (`None`).
pub async fn retry_transient<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    on_retry: OnRetry<'_>,
    mut op: F,
) -> Option<Result<T, E>>
where
    E: Failure,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::default();
    loop {
        match op().await {
            Ok(value) => return Some(Ok(value)),
            Err(e) if e.is_permanent() => return Some(Err(e)),
            Err(e) => {
                on_retry();
                backoff.wait(what, &e.to_string(), shutdown).await?;
            }
        }
    }
}

/// Exponential back-off between attempts: 200 ms doubling to 10 s.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(200))
    }
}

impl Backoff {
    /// Logs the failure and waits before the next attempt; `None` when shutdown is asked for
    /// (before or while waiting): the caller gives up.
    pub async fn wait(&mut self, what: &str, error: &str, shutdown: &CancellationToken) -> Option<()> {
        if shutdown.is_cancelled() {
            tracing::warn!(%error, "{what} failed while stopping; giving up");
            return None;
        }
        tracing::warn!(%error, retry_in = ?self.0, "{what} failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(self.0) => {}
            _ = shutdown.cancelled() => {}
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        Some(())
    }
}

/// Writes `items` with `write`, retrying transient failures. When a write is refused
/// permanently, the items are split in halves and each half written on its own, down to single
/// items, so that everything writable is written and exactly the refused items come back, each
/// with its error. `None` when shutdown came first (then nothing may be acknowledged).
///
/// A refusal costs about `2 log2(n)` extra writes per refused item; good batches cost nothing.
pub async fn write_isolating<'a, T, E, F, Fut>(
    what: &str,
    items: &'a [T],
    shutdown: &CancellationToken,
    on_retry: OnRetry<'_>,
    mut write: F,
) -> Option<Vec<(usize, String)>>
where
    E: Failure,
    F: FnMut(&'a [T]) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut refused = Vec::new();
    // A stack of ranges still to write, starting with the whole batch.
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..items.len());
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        let chunk = &items[range.clone()];
        match retry_transient(what, shutdown, on_retry, || write(chunk)).await? {
            Ok(()) => {}
            Err(e) if range.len() == 1 => {
                tracing::error!(error = %e, "{what}: refused permanently; setting the item aside");
                refused.push((range.start, e.to_string()));
            }
            Err(e) => {
                tracing::warn!(error = %e, items = range.len(), "{what}: refused permanently; isolating the refused items");
                let mid = range.start + range.len() / 2;
                pending.push(mid..range.end);
                pending.push(range.start..mid);
            }
        }
    }
    refused.sort_unstable();
    Some(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    #[derive(Debug)]
    enum Fail {
        Blip,
        Refused(u32),
    }

    impl std::fmt::Display for Fail {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl Failure for Fail {
        fn is_permanent(&self) -> bool {
            matches!(self, Fail::Refused(_))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success() {
        let mut calls = 0;
        let out = retry_transient("op", &CancellationToken::new(), &|| {}, || {
            calls += 1;
            let n = calls;
            async move { if n < 4 { Err(Fail::Blip) } else { Ok(n) } }
        })
        .await;
        assert!(matches!(out, Some(Ok(4))));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_only_when_stopping() {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stopper.cancel();
        });
        let out = retry_transient("op", &shutdown, &|| {}, || async { Err::<(), _>(Fail::Blip) }).await;
        assert!(out.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_come_back_at_once_transient_ones_are_counted() {
        let retries = std::sync::atomic::AtomicU32::new(0);
        let calls = Cell::new(0);
        let count = || {
            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let out = retry_transient("op", &CancellationToken::new(), &count, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { Err::<(), _>(if n < 3 { Fail::Blip } else { Fail::Refused(7) }) }
        })
        .await;
        assert!(matches!(out, Some(Err(Fail::Refused(7)))));
        assert_eq!((calls.get(), retries.into_inner()), (3, 2));
    }

    /// A fake writer over item numbers, refusing every batch that holds a poisoned item, and
    /// blinking (a transient failure) on every third call.
    async fn isolate(items: &[u32], poison: &BTreeSet<u32>) -> (Vec<(usize, String)>, Vec<u32>) {
        let written = std::cell::RefCell::new(Vec::new());
        let calls = Cell::new(0u32);
        let refused = write_isolating("write", items, &CancellationToken::new(), &|| {}, |chunk: &[u32]| {
            calls.set(calls.get() + 1);
            let result = if calls.get().is_multiple_of(3) {
                Err(Fail::Blip)
            } else if let Some(p) = chunk.iter().find(|i| poison.contains(i)) {
                Err(Fail::Refused(*p))
            } else {
                written.borrow_mut().extend_from_slice(chunk);
                Ok(())
            };
            async move { result }
        })
        .await
        .unwrap();
        (refused, written.into_inner())
    }

    proptest! {
        #[test]
        fn exactly_the_poisoned_items_are_set_aside_and_every_other_item_written_once(
            n in 0u32..300,
            poison in proptest::collection::btree_set(0u32..300, 0..8),
        ) {
            let items: Vec<u32> = (0..n).collect();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let (refused, mut written) = runtime.block_on(isolate(&items, &poison));
            let refused_items: BTreeSet<u32> = refused.iter().map(|(i, _)| items[*i]).collect();
            let expected: BTreeSet<u32> = poison.iter().copied().filter(|p| *p < n).collect();
            prop_assert_eq!(&refused_items, &expected);
            for (i, error) in &refused {
                prop_assert_eq!(error, &format!("Refused({})", items[*i]));
            }
            written.sort_unstable();
            let healthy: Vec<u32> = items.iter().copied().filter(|i| !poison.contains(i)).collect();
            prop_assert_eq!(written, healthy);
        }
    }
}
