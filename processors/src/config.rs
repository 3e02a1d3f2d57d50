//! Processor settings.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ProcessorConfig {
    /// Kafka consumer group; every processor instance of one deployment uses the same one.
    #[arg(long = "group-id", env = "FLEETSTREAM_GROUP_ID", default_value = "fleetstream-processors")]
    pub group_id: String,
    /// Rows per ClickHouse insert at most.
    #[arg(long, env = "FLEETSTREAM_BATCH_MAX_ROWS", default_value_t = 10_000)]
    pub batch_max_rows: usize,
    /// Longest a position waits in a batch before it is written, in milliseconds.
    #[arg(long, env = "FLEETSTREAM_BATCH_MAX_WAIT_MS", default_value_t = 500)]
    pub batch_max_wait_ms: u64,
}

impl ProcessorConfig {
    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }

    pub fn local(group_id: &str) -> Self {
        ProcessorConfig { group_id: group_id.into(), batch_max_rows: 10_000, batch_max_wait_ms: 200 }
    }
}
