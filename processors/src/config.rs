//! Processor settings.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ProcessorConfig {
    /// Kafka consumer group; every processor instance of one deployment uses the same one.
    #[arg(long = "group-id", env = "FLEETSTREAM_GROUP_ID", default_value = "fleetstream-processors")]
    pub group_id: String,
    /// Positions per batch (and rows per ClickHouse insert) at most. ClickHouse pays for every
    /// insert (a part per table, merged later): batches of 50,000 drained the pipeline bench
    /// about 1.5 times faster than batches of 10,000, at half the database's CPU, for some 40 MB
    /// more of processor memory with its positions (`batch_max_bytes` bounds larger ones). Under
    /// load, the batch wait usually ships a batch first.
    #[arg(long, env = "FLEETSTREAM_BATCH_MAX_ROWS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_max_rows: u64,
    /// Bytes of consumed messages per batch at most: with large positions (attributes may take
    /// 4 KiB each) a batch closes on this before it reaches its row limit, so that memory stays
    /// bounded whatever devices send. 50,000 of the benchmark's positions stay well under it.
    #[arg(long, env = "FLEETSTREAM_BATCH_MAX_BYTES", default_value_t = 32 << 20, value_parser = clap::value_parser!(u64).range(65_536..=1 << 30))]
    pub batch_max_bytes: u64,
    /// Longest a position waits in a batch before it is written, in milliseconds.
    #[arg(long, env = "FLEETSTREAM_BATCH_MAX_WAIT_MS", default_value_t = 500)]
    pub batch_max_wait_ms: u64,
    /// A batch is written as soon as no message came for this long, in milliseconds: a lone
    /// fix is not held for the full wait, a stream of them still fills batches.
    #[arg(long, env = "FLEETSTREAM_BATCH_IDLE_MS", default_value_t = 10)]
    pub batch_idle_ms: u64,
    /// Hysteresis: seconds a device must stay on the other side of a fence boundary before an
    /// enter or exit counts (0: at once).
    #[arg(long, env = "FLEETSTREAM_FENCE_MIN_SECS", default_value_t = 0)]
    pub fence_min_secs: u64,
    /// Hysteresis: metres past a fence boundary before an enter or exit counts (0: any).
    #[arg(long, env = "FLEETSTREAM_FENCE_MIN_DISTANCE_M", default_value_t = 0.0)]
    pub fence_min_distance_m: f64,
    /// How often processors look for changed fences, alert rules and registry entries, in milliseconds.
    #[arg(long, env = "FLEETSTREAM_FENCES_POLL_MS", default_value_t = 5_000)]
    pub fences_poll_ms: u64,
    /// Speed (m/s) at or above which a device counts as moving.
    #[arg(long, env = "FLEETSTREAM_MOVING_SPEED_MPS", default_value_t = 0.5)]
    pub moving_speed_mps: f64,
    /// Kafka group session timeout, milliseconds: how long the group waits for a processor that
    /// died without leaving (kill -9, lost host) before its partitions move to another.
    #[arg(long, env = "FLEETSTREAM_SESSION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(6_000..=300_000))]
    pub session_timeout_ms: u32,
    /// How far behind its device's newest fix a fix may arrive, in seconds, and still be placed in
    /// order (the fixes after it corrected); older ones are stored flagged late.
    #[arg(long, env = "FLEETSTREAM_MAX_LATENESS_SECS", default_value_t = 600)]
    pub max_lateness_secs: u64,
    /// Most fixes a device's history keeps within the lateness bound (memory per device).
    #[arg(long, env = "FLEETSTREAM_MAX_HISTORY_FIXES", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_history_fixes: u64,
    /// Address for the processor's Prometheus metrics (`GET /metrics`); empty disables them.
    #[arg(
        long = "processor-metrics-listen",
        env = "FLEETSTREAM_PROCESSOR_METRICS_LISTEN",
        default_value = "127.0.0.1:8082"
    )]
    pub metrics_listen: String,
}

impl ProcessorConfig {
    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }

    pub fn settings(&self) -> crate::enrich::Settings {
        crate::enrich::Settings {
            hysteresis: fleetstream_geofence::Hysteresis {
                min_time_ms: (self.fence_min_secs * 1000) as i64,
                min_distance_m: self.fence_min_distance_m,
            },
            moving_speed_mps: self.moving_speed_mps,
            max_lateness_ms: (self.max_lateness_secs as i64).saturating_mul(1000),
            max_history_fixes: self.max_history_fixes as usize,
        }
    }

    /// The defaults in group `group_id`, quicker where tests wait: batches written within 200 ms,
    /// fences polled every 500 ms; no metrics listener.
    pub fn local(group_id: &str) -> Self {
        fleetstream_schemas::settings::from_flags(&[
            &format!("--group-id={group_id}"),
            "--batch-max-wait-ms=200",
            "--fences-poll-ms=500",
            "--processor-metrics-listen=",
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(flag: &str) -> bool {
        std::panic::catch_unwind(|| fleetstream_schemas::settings::from_flags::<ProcessorConfig>(&[flag])).is_err()
    }

    #[test]
    fn batch_limits_are_bounded() {
        let defaults: ProcessorConfig = fleetstream_schemas::settings::from_flags(&[]);
        assert_eq!((defaults.batch_max_rows, defaults.batch_max_bytes), (50_000, 32 << 20));
        for flag in
            ["--batch-max-rows=0", "--batch-max-rows=1000001", "--batch-max-bytes=1000", "--batch-max-bytes=2000000000"]
        {
            assert!(refused(flag), "{flag} accepted");
        }
        for flag in ["--batch-max-rows=1", "--batch-max-rows=1000000", "--batch-max-bytes=65536"] {
            assert!(!refused(flag), "{flag} refused");
        }
    }
}
