//! Ingest settings: where to listen and how much one request may carry.

use std::time::Duration;

use clap::Args;
use fleetstream_schemas::Limits;

#[derive(Debug, Clone, Args)]
pub struct IngestConfig {
    /// Address the device-facing HTTP API listens on.
    #[arg(long = "ingest-listen", env = "FLEETSTREAM_INGEST_LISTEN", default_value = "127.0.0.1:8081")]
    pub ingest_listen: String,
    /// Address of the OsmAnd port (Traccar Client apps); empty to disable it.
    #[arg(long = "osmand-listen", env = "FLEETSTREAM_OSMAND_LISTEN", default_value = "127.0.0.1:5055")]
    pub osmand_listen: String,
    /// Address of the Teltonika port (codec 8, 8E and 16 over TCP); empty to disable it.
    #[arg(long = "teltonika-listen", env = "FLEETSTREAM_TELTONIKA_LISTEN", default_value = "127.0.0.1:5027")]
    pub teltonika_listen: String,
    /// Address of the GT06 port (Concox and clones, over TCP); empty to disable it.
    #[arg(long = "gt06-listen", env = "FLEETSTREAM_GT06_LISTEN", default_value = "127.0.0.1:5023")]
    pub gt06_listen: String,
    #[command(flatten)]
    pub tcp: TcpLimits,
    /// The tracker ports (Teltonika, GT06) take only devices in the registry (managed through
    /// the API): an unknown Teltonika IMEI is answered 0x00, an unknown GT06 login is not
    /// answered, and the connection is closed. Reads the registry from ClickHouse (the
    /// --clickhouse-* settings). HTTP and OsmAnd are not concerned: tokens authorise them.
    #[arg(long, env = "FLEETSTREAM_REQUIRE_REGISTERED")]
    pub require_registered: bool,
    /// With --require-registered: how often ingest looks for registry changes, in milliseconds.
    #[arg(long, env = "FLEETSTREAM_REGISTRY_POLL_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_poll_ms: u64,
    /// File of device and fleet tokens (`<token> device:<id>` or `<token> fleet:<name>` per line).
    #[arg(long, env = "FLEETSTREAM_TOKENS_FILE")]
    pub tokens_file: Option<std::path::PathBuf>,
    /// Token entries as in the tokens file, comma-separated. Without any tokens ingest is open.
    #[arg(long, env = "FLEETSTREAM_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,
    /// Largest request body accepted, in bytes (413 above it).
    #[arg(long, env = "FLEETSTREAM_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most positions accepted in one request (413 above it).
    #[arg(long, env = "FLEETSTREAM_MAX_BATCH_ITEMS", default_value_t = 10_000)]
    pub max_batch_items: usize,
    /// Most dead letters one request writes: the first N rejected items get one each, the rest
    /// one summary letter between them.
    #[arg(long, env = "FLEETSTREAM_MAX_DEAD_LETTERS", default_value_t = 100)]
    pub max_dead_letters: usize,
    /// How far ahead of the server clock a fix time may be, in seconds.
    #[arg(long, env = "FLEETSTREAM_MAX_FUTURE_SKEW_SECS", default_value_t = fleetstream_schemas::input::DEFAULT_MAX_FUTURE_SKEW_SECS)]
    pub max_future_skew_secs: u64,
    /// Oldest fix accepted, in seconds before now; 0 accepts any age after 2000-01-01 (imports).
    #[arg(long, env = "FLEETSTREAM_MAX_FIX_AGE_SECS", default_value_t = 0)]
    pub max_fix_age_secs: u64,
    /// How long a position may wait for the brokers before the request fails with 503.
    #[arg(long, env = "FLEETSTREAM_PRODUCE_TIMEOUT_MS", default_value_t = 10_000)]
    pub produce_timeout_ms: u64,
    /// How long the producer waits to fill a batch, in milliseconds: higher costs single-position
    /// requests latency, lower costs throughput under load.
    #[arg(long, env = "FLEETSTREAM_PRODUCE_LINGER_MS", default_value_t = 5)]
    pub produce_linger_ms: u64,
    /// Messages the producer may hold in memory before requests get 503 (back-pressure).
    #[arg(long, env = "FLEETSTREAM_PRODUCER_QUEUE_MESSAGES", default_value_t = 200_000)]
    pub producer_queue_messages: usize,
}

/// Bounds on the TCP tracker ports (Teltonika, GT06), each protocol on its own.
#[derive(Debug, Clone, Args)]
pub struct TcpLimits {
    /// Most tracker connections held open at once per protocol; more are closed at once.
    #[arg(long, env = "FLEETSTREAM_TCP_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub tcp_max_connections: usize,
    /// Largest frame a tracker may send, in bytes; a larger one is refused and the connection closed.
    #[arg(long, env = "FLEETSTREAM_TCP_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub tcp_max_frame_bytes: usize,
    /// Seconds a connection may stay silent between frames before it is closed.
    #[arg(long, env = "FLEETSTREAM_TCP_IDLE_TIMEOUT_SECS", default_value_t = 900)]
    pub tcp_idle_timeout_secs: u64,
    /// Seconds a frame may take to arrive once its first byte has (no slowloris); also the bound
    /// on writing an answer.
    #[arg(long, env = "FLEETSTREAM_TCP_FRAME_TIMEOUT_SECS", default_value_t = 30)]
    pub tcp_frame_timeout_secs: u64,
}

impl TcpLimits {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.tcp_idle_timeout_secs)
    }

    pub fn frame_timeout(&self) -> Duration {
        Duration::from_secs(self.tcp_frame_timeout_secs)
    }
}

impl IngestConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_future_skew: Duration::from_secs(self.max_future_skew_secs),
            max_age: (self.max_fix_age_secs > 0).then(|| Duration::from_secs(self.max_fix_age_secs)),
            ..Limits::default()
        }
    }

    /// Every configured token entry, from the file and the environment.
    pub fn load_tokens(&self) -> anyhow::Result<crate::auth::Tokens> {
        let mut text = String::new();
        if let Some(path) = &self.tokens_file {
            text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read tokens file {}: {e}", path.display()))?;
            text.push('\n');
        }
        if let Some(entries) = &self.tokens {
            text.push_str(entries);
        }
        crate::auth::Tokens::parse(&text).map_err(anyhow::Error::msg)
    }

    /// Defaults, listening on an OS-chosen port: for tests and embedding.
    pub fn local() -> Self {
        fleetstream_schemas::settings::from_flags(&[
            "--ingest-listen=127.0.0.1:0",
            "--osmand-listen=127.0.0.1:0",
            "--teltonika-listen=127.0.0.1:0",
            "--gt06-listen=127.0.0.1:0",
        ])
    }
}
