//! Retrying storage and broker calls until they succeed or shutdown is asked for.
//!
//! A processor must neither drop a batch nor exit because ClickHouse or Kafka blinked: it waits,
//! with exponential back-off (200 ms doubling to 10 s), and gives up only when stopping, in which
//! case nothing is acknowledged and the messages are re-delivered.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `op` until it succeeds (`Some`) or shutdown is cancelled first (`None`).
pub async fn with_backoff<T, E, F, Fut>(what: &str, shutdown: &CancellationToken, mut op: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(e) if shutdown.is_cancelled() => {
                tracing::warn!(error = %e, "{what} failed while stopping; giving up");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "{what} failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_success() {
        let mut calls = 0;
        let out = with_backoff("op", &CancellationToken::new(), || {
            calls += 1;
            let n = calls;
            async move { if n < 4 { Err("not yet") } else { Ok(n) } }
        })
        .await;
        assert_eq!(out, Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_only_when_stopping() {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stopper.cancel();
        });
        let out: Option<()> = with_backoff("op", &shutdown, || async { Err::<(), _>("down") }).await;
        assert_eq!(out, None);
    }
}
