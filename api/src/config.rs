//! Query API settings.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address the query API listens on.
    #[arg(long = "api-listen", env = "FLEETSTREAM_API_LISTEN", default_value = "127.0.0.1:8080")]
    pub api_listen: String,
    /// Most positions one track request returns; longer ranges are paged with `next_from`.
    #[arg(long, env = "FLEETSTREAM_MAX_TRACK_POINTS", default_value_t = 100_000)]
    pub max_track_points: u64,
    /// Most devices one latest-positions request returns.
    #[arg(long, env = "FLEETSTREAM_MAX_DEVICES", default_value_t = 10_000)]
    pub max_devices: u64,
    /// How long live aggregates are served from memory before ClickHouse is asked again, in
    /// milliseconds: all dashboards polling within it share one query (0 disables the cache).
    #[arg(long, env = "FLEETSTREAM_LIVE_CACHE_MS", default_value_t = 1_000)]
    pub live_cache_ms: u64,
    /// A device with no fix for this many seconds counts as offline.
    #[arg(long, env = "FLEETSTREAM_ONLINE_WINDOW_SECS", default_value_t = 600)]
    pub online_window_secs: u64,
    /// Reader tokens (comma-separated): once set, every read needs one (or an admin token).
    #[arg(long, env = "FLEETSTREAM_READ_TOKENS", hide_env_values = true)]
    pub read_tokens: Option<String>,
    /// Admin tokens (comma-separated): once set, changing fences or the registry needs one.
    #[arg(long, env = "FLEETSTREAM_ADMIN_TOKENS", hide_env_values = true)]
    pub admin_tokens: Option<String>,
    /// Speed (m/s) at or above which an online device counts as moving.
    #[arg(long = "live-moving-speed-mps", env = "FLEETSTREAM_LIVE_MOVING_SPEED_MPS", default_value_t = 0.5)]
    pub live_moving_speed_mps: f64,
    /// Base-map tiles for the dashboard, as a URL template with {z}, {x} and {y} (for example
    /// `https://tile.openstreetmap.org/{z}/{x}/{y}.png`); empty: no base map.
    #[arg(long = "dashboard-tiles", env = "FLEETSTREAM_DASHBOARD_TILES", default_value = "")]
    pub dashboard_tiles: String,
    /// History queries (tracks, reports, visits, events) running at once; more get 429 with
    /// Retry-After, so that a burst of large queries cannot starve the live endpoints.
    #[arg(long, env = "FLEETSTREAM_MAX_CONCURRENT_QUERIES", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_queries: u32,
    /// Rows per ClickHouse query when a CSV or NDJSON track streams a whole range (memory per
    /// streaming request).
    #[arg(long, env = "FLEETSTREAM_STREAM_PAGE_ROWS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    pub stream_page_rows: u64,
    /// Most positions one fence may have, all its rings together; larger uploads get 400 (a fence
    /// is tested against every position near it, by every processor).
    #[arg(long, env = "FLEETSTREAM_MAX_FENCE_VERTICES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(4..=10_000_000))]
    pub max_fence_vertices: u64,
    /// Seconds a connection may leave an answer untaken (its socket full, nothing read) before
    /// it is closed: a stream client that stopped reading, a download that stalled.
    #[arg(long, env = "FLEETSTREAM_API_WRITE_STALL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub write_stall_secs: u64,
    /// Server-Sent Event streams (`/v1/stream/...`) open at once; more get 503. A stream's slot
    /// is held until its connection closes.
    #[arg(long, env = "FLEETSTREAM_MAX_STREAMS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_streams: u32,
    /// Streams resuming from an old id at once, each reading Kafka with a consumer of its own
    /// until it has caught up; more wait their turn.
    #[arg(long, env = "FLEETSTREAM_MAX_STREAM_RESUMES", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_stream_resumes: u32,
    /// Messages of a stream's topic that one client may fall behind before it is dropped (it may
    /// resume from its last id): the shared ring of each output topic holds this many.
    #[arg(long, env = "FLEETSTREAM_STREAM_BUFFER", default_value_t = 8_192, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stream_buffer: u32,
    /// How often an idle stream sends a keep-alive comment, in milliseconds.
    #[arg(long, env = "FLEETSTREAM_STREAM_KEEP_ALIVE_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub stream_keep_alive_ms: u64,
}

impl ApiConfig {
    /// The defaults, listening on an OS-chosen port: for tests and embedding.
    pub fn local() -> Self {
        fleetstream_schemas::settings::from_flags(&["--api-listen=127.0.0.1:0"])
    }
}
