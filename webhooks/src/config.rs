//! Settings of the webhook deliverer.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    // Ids prefixed: `run` and `up` flatten this beside the other services' settings.
    /// Deliver to receivers on loopback, private, link-local and other non-public addresses.
    /// Off by default: a webhook URL is chosen by an API user, and the deliverer runs next to
    /// ClickHouse, the broker and cloud metadata services.
    #[arg(
        id = "webhook_allow_private_networks",
        long = "webhook-allow-private-networks",
        env = "FLEETSTREAM_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
        default_value_t = false
    )]
    pub allow_private_networks: bool,
    /// How long a delivery is retried (exponential back-off) before it is given up as dead,
    /// counted from when its receiver began failing. At most 23: a webhook's consumer reads
    /// nothing while it retries, and Kafka consumers may go at most 24 h between reads.
    #[arg(id = "webhook_retry_hours",
        value_name = "HOURS", long = "webhook-retry-hours", env = "FLEETSTREAM_WEBHOOK_RETRY_HOURS",
          default_value_t = 12.0, value_parser = parse_hours)]
    pub retry_hours: f64,
    /// Longest wait between two attempts of one delivery, seconds.
    #[arg(id = "webhook_max_backoff_secs",
        value_name = "SECS", long = "webhook-max-backoff-secs", env = "FLEETSTREAM_WEBHOOK_MAX_BACKOFF_SECS",
          default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_backoff_secs: u64,
    /// How long one attempt may take (connect, send, answer), seconds.
    #[arg(id = "webhook_timeout_secs",
        value_name = "SECS", long = "webhook-timeout-secs", env = "FLEETSTREAM_WEBHOOK_TIMEOUT_SECS",
          default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout_secs: u64,
    /// Address of the deliverer's Prometheus metrics (`/metrics`); empty: none.
    #[arg(
        id = "webhook_metrics_listen",
        value_name = "ADDR",
        long = "webhook-metrics-listen",
        env = "FLEETSTREAM_WEBHOOK_METRICS_LISTEN",
        default_value = "127.0.0.1:8083"
    )]
    pub metrics_listen: String,
    /// How often the webhook list is checked for changes, milliseconds.
    #[arg(id = "webhook_poll_ms",
        value_name = "MS", long = "webhook-poll-ms", env = "FLEETSTREAM_WEBHOOK_POLL_MS",
          default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub poll_ms: u64,
}

/// Longest retry window: librdkafka's longest `max.poll.interval.ms` (24 h) less a margin for
/// the last back-off and attempt.
const MAX_RETRY_HOURS: f64 = 23.0;

fn parse_hours(text: &str) -> Result<f64, String> {
    let hours: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of hours"))?;
    if !(0.0..=MAX_RETRY_HOURS).contains(&hours) {
        return Err(format!("must be between 0 and {MAX_RETRY_HOURS} hours"));
    }
    Ok(hours)
}

impl WebhookConfig {
    pub fn retry_for(&self) -> Duration {
        Duration::from_secs_f64(self.retry_hours * 3600.0)
    }
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.max_backoff_secs)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
    /// Longer than one delivery can take (its retry window, a last back-off and attempt), so
    /// that the group never drops a member that is retrying.
    pub fn max_poll_interval_ms(&self) -> u64 {
        let longest = self.retry_for() + self.max_backoff().mul_f64(1.2) + self.timeout() + Duration::from_secs(60);
        (longest.as_millis() as u64).clamp(300_000, 86_400_000)
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private_networks: false,
            metrics_listen: String::new(),
            retry_hours: 12.0,
            max_backoff_secs: 300,
            timeout_secs: 10,
            poll_ms: 2000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hours_are_bounded() {
        assert_eq!(parse_hours("1.5"), Ok(1.5));
        assert!(parse_hours("-1").is_err() && parse_hours("23.5").is_err() && parse_hours("NaN").is_err());
        let longest = WebhookConfig {
            retry_hours: MAX_RETRY_HOURS,
            max_backoff_secs: 3600,
            timeout_secs: 300,
            ..Default::default()
        };
        assert!(longest.max_poll_interval_ms() <= 86_400_000, "within librdkafka's bound");
        let default = WebhookConfig::default();
        assert!(default.max_poll_interval_ms() as u128 > default.retry_for().as_millis() + 360_000);
        assert!(parse_hours("soon").unwrap_err().contains("not a number"));
    }
}
