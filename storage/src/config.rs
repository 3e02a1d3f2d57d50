//! Where fleetstream's ClickHouse is, as flags and environment variables: a server over HTTP or
//! HTTPS (optionally trusting only a given CA), or (with `--chdb-dir`) current ClickHouse
//! embedded in the process through chDB. The password never shows in `Debug` or [`describe`].
//!
//! [`describe`]: ClickHouseConfig::describe

use std::path::PathBuf;

use clap::Args;

/// The repository's `versions.env`: the nisshi and chDB releases that `scripts/lib/services.sh`
/// installs (it sources the same file), so that one edit moves the installer and the code that
/// finds what it installed.
const VERSIONS_ENV: &str = include_str!("../../versions.env");

/// The value of `name` in `versions.env` (a `NAME=value` line). Panics on a name the file lacks:
/// a unit test reads every name the code asks for.
pub fn pinned(name: &str) -> &'static str {
    VERSIONS_ENV
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
        .unwrap_or_else(|| panic!("versions.env has no {name}"))
}

#[derive(Clone, Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP(S) endpoint, e.g. http://127.0.0.1:8123 or https://host:8443 (ignored with
    /// --chdb-dir). HTTPS checks the server's certificate against --clickhouse-ca-file, else
    /// against the public CAs built in (Mozilla's list).
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
    /// CA certificate(s), PEM, that signed the server's certificate: with an https:// URL, only
    /// these are trusted (a private or self-signed CA).
    #[arg(long = "clickhouse-ca-file", env = "FLEETSTREAM_CLICKHOUSE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Longest a new connection to the server may take to be ready, in milliseconds: TCP
    /// connect and, with https://, the TLS handshake. A server (or proxy) that accepts TCP but
    /// never completes the handshake then fails the request, which is retried, instead of
    /// holding it forever.
    #[arg(
        long = "clickhouse-connect-timeout-ms",
        env = "FLEETSTREAM_CLICKHOUSE_CONNECT_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub connect_timeout_ms: u64,
    /// A cluster of the server's `<remote_servers>`: migrations run `ON CLUSTER` and create
    /// replicated tables (`<table>_local`, needing ZooKeeper and the `{shard}` and `{replica}`
    /// macros) behind `Distributed` tables sharded by device, which every read and write uses.
    /// Inserts wait until the shards hold the rows.
    #[arg(long = "clickhouse-cluster", env = "FLEETSTREAM_CLICKHOUSE_CLUSTER")]
    pub cluster: Option<String>,
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
        fleetstream_schemas::settings::from_flags(&[
            &format!("--clickhouse-url={url}"),
            &format!("--clickhouse-database={database}"),
        ])
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
            None => {
                let ca = match &self.ca_file {
                    Some(ca) if self.url.starts_with("https://") => format!(", CA {}", ca.display()),
                    _ => String::new(),
                };
                let cluster = match &self.cluster {
                    Some(cluster) => format!(", cluster {cluster}"),
                    None => String::new(),
                };
                format!("ClickHouse at {}{ca}{cluster}, database {}", redact_url(&self.url), self.database)
            }
        }
    }
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .field("ca_file", &self.ca_file)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("cluster", &self.cluster)
            .field("chdb_dir", &self.chdb_dir)
            .field("chdb_lib", &self.chdb_lib)
            .finish()
    }
}

/// `url` without the password of a `user:password@` part, should one have been put there.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:<redacted>@{}", &rest[at + 1..])
        }
        None => url.to_string(),
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
    cache_dir().join(format!("chdb-core-{}", pinned("CHDB_VERSION"))).join("chdb").join("_chdb.abi3.so")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_version_the_code_asks_for_is_in_versions_env() {
        for name in ["NISSHI_VERSION", "NISSHI_FEATURES", "CHDB_VERSION"] {
            let value = pinned(name);
            assert!(!value.is_empty() && !value.contains(char::is_whitespace), "{name}={value:?}");
        }
        assert!(pinned("CHDB_VERSION").split('.').all(|part| part.parse::<u32>().is_ok()));
        assert!(std::panic::catch_unwind(|| pinned("NOT_A_VERSION")).is_err());
    }

    #[test]
    fn the_password_never_shows() {
        let mut config = ClickHouseConfig::local("https://ops:pw-in-url@ch.example.com:8443/", "fleet");
        config.password = "hunter2-secret".into();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("pw-in-url"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let described = config.describe();
        assert_eq!(described, "ClickHouse at https://ops:<redacted>@ch.example.com:8443/, database fleet");
        assert_eq!(redact_url("http://127.0.0.1:8123"), "http://127.0.0.1:8123");
        assert_eq!(redact_url("https://h/path@x"), "https://h/path@x");
    }

    #[test]
    fn a_cluster_is_named_where_storage_is_described() {
        let config =
            ClickHouseConfig { cluster: Some("fleet".into()), ..ClickHouseConfig::local("http://ch-1:8123", "fs") };
        assert_eq!(config.describe(), "ClickHouse at http://ch-1:8123, cluster fleet, database fs");
    }
}
