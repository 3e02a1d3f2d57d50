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
}

impl ApiConfig {
    pub fn local() -> Self {
        ApiConfig { api_listen: "127.0.0.1:0".into(), max_track_points: 100_000, max_devices: 10_000 }
    }
}
