//! Where fleetstream's ClickHouse is, as flags and environment variables: a server over HTTP,
//! or (with `--chdb-dir`) current ClickHouse embedded in the process through chDB.

use std::path::PathBuf;

use clap::Args;

/// The chDB release `scripts/setup` installs and `--chdb-lib` finds by default.
pub const CHDB_VERSION: &str = "26.9.0";

#[derive(Debug, Clone, Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP endpoint (ignored with --chdb-dir).
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
    /// Use ClickHouse embedded in this process (chDB) with its data in this directory, instead of
    /// a server. One directory per process.
    #[arg(long = "chdb-dir", env = "FLEETSTREAM_CHDB_DIR")]
    pub chdb_dir: Option<PathBuf>,
    /// chDB's engine library (`chdb/_chdb.abi3.so` of the PyPI package `chdb-core`); by default
    /// where `scripts/setup` installs it.
    #[arg(long = "chdb-lib", env = "FLEETSTREAM_CHDB_LIB")]
    pub chdb_lib: Option<PathBuf>,
}

impl ClickHouseConfig {
    /// A ClickHouse server over HTTP.
    pub fn local(url: &str, database: &str) -> Self {
        ClickHouseConfig {
            url: url.into(),
            database: database.into(),
            user: "default".into(),
            password: String::new(),
            chdb_dir: None,
            chdb_lib: None,
        }
    }

    /// Embedded ClickHouse (chDB) with its data in `dir`.
    pub fn embedded(dir: PathBuf, database: &str) -> Self {
        ClickHouseConfig { chdb_dir: Some(dir), ..ClickHouseConfig::local("", database) }
    }

    /// The chDB library to load: `--chdb-lib`, else the copy `scripts/setup` installs.
    pub fn chdb_library(&self) -> PathBuf {
        self.chdb_lib.clone().unwrap_or_else(default_chdb_library)
    }

    /// Where this configuration stores data, for logs and start-up banners.
    pub fn describe(&self) -> String {
        match &self.chdb_dir {
            Some(dir) => format!("embedded ClickHouse (chDB) in {}, database {}", dir.display(), self.database),
            None => format!("ClickHouse at {}, database {}", self.url, self.database),
        }
    }
}

/// fleetstream's cache directory: `$FLEETSTREAM_CACHE_DIR`, else `$XDG_CACHE_HOME/fleetstream`,
/// else `~/.cache/fleetstream` (the same rule as `scripts/lib/services.sh`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLEETSTREAM_CACHE_DIR") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    base.join("fleetstream")
}

fn default_chdb_library() -> PathBuf {
    cache_dir().join(format!("chdb-core-{CHDB_VERSION}")).join("chdb").join("_chdb.abi3.so")
}
