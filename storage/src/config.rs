//! ClickHouse connection settings, as flags and environment variables.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP endpoint.
    #[arg(long = "clickhouse-url", env = "FLEETSTREAM_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub url: String,
    /// Database that holds fleetstream's tables; created at startup if missing.
    #[arg(long = "clickhouse-database", env = "FLEETSTREAM_CLICKHOUSE_DATABASE", default_value = "fleetstream")]
    pub database: String,
    /// ClickHouse user.
    #[arg(long = "clickhouse-user", env = "FLEETSTREAM_CLICKHOUSE_USER", default_value = "default")]
    pub user: String,
    /// ClickHouse password.
    #[arg(
        long = "clickhouse-password",
        env = "FLEETSTREAM_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
}

impl ClickHouseConfig {
    pub fn local(url: &str, database: &str) -> Self {
        ClickHouseConfig { url: url.into(), database: database.into(), user: "default".into(), password: String::new() }
    }
}
