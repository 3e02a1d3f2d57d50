//! The ClickHouse engine integration tests run against, chosen by `scripts/test`.
//!
//! `FLEETSTREAM_TEST_ENGINE=http` (the default) uses the server at
//! `FLEETSTREAM_TEST_CLICKHOUSE_URL` (Debian's ClickHouse 18.16 in CI); `chdb` uses current
//! ClickHouse embedded in the test process, with its data in a directory of its own under
//! `FLEETSTREAM_TEST_CHDB_DIR`; `cluster` uses the ClickHouse cluster named
//! `FLEETSTREAM_TEST_CLICKHOUSE_CLUSTER` (`--clickhouse-cluster`) through the server at
//! `FLEETSTREAM_TEST_CLICKHOUSE_URL`, one of the `FLEETSTREAM_TEST_CLICKHOUSE_URLS` (space
//! separated, one server per shard). The test command runs the storage tests on each.

use std::path::PathBuf;

use crate::config::ClickHouseConfig;

/// Which engine the tests of this run use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestEngine {
    Http,
    Chdb,
    Cluster,
}

pub fn engine() -> TestEngine {
    match std::env::var("FLEETSTREAM_TEST_ENGINE").as_deref() {
        Ok("chdb") => TestEngine::Chdb,
        Ok("cluster") => TestEngine::Cluster,
        Ok("http") | Err(_) => TestEngine::Http,
        Ok(other) => panic!("FLEETSTREAM_TEST_ENGINE={other:?}: use http, chdb or cluster"),
    }
}

/// The value of a variable `scripts/test` sets; a clear failure when a test runs without it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test needs the real services (broker, ClickHouse); run it with scripts/test, which provides them")
    })
}

/// The HTTP URL of the test server (for tests that talk to it directly).
pub fn clickhouse_url() -> String {
    required_env("FLEETSTREAM_TEST_CLICKHOUSE_URL")
}

/// A configuration for `database` on this run's engine.
pub fn config(database: &str) -> ClickHouseConfig {
    match engine() {
        TestEngine::Http => ClickHouseConfig::local(&clickhouse_url(), database),
        TestEngine::Cluster => on_cluster(&clickhouse_url(), database),
        TestEngine::Chdb => {
            // chDB opens one directory per process; tests in one process share it and keep
            // apart by database.
            let dir = PathBuf::from(required_env("FLEETSTREAM_TEST_CHDB_DIR")).join(std::process::id().to_string());
            ClickHouseConfig::embedded(dir, database)
        }
    }
}

/// `database` on the test cluster, through the server at `url`.
pub fn on_cluster(url: &str, database: &str) -> ClickHouseConfig {
    let cluster = required_env("FLEETSTREAM_TEST_CLICKHOUSE_CLUSTER");
    ClickHouseConfig { cluster: Some(cluster), ..ClickHouseConfig::local(url, database) }
}

/// The HTTP URLs of every server of the test cluster, one per shard.
pub fn cluster_urls() -> Vec<String> {
    required_env("FLEETSTREAM_TEST_CLICKHOUSE_URLS").split_whitespace().map(String::from).collect()
}

/// A database name no other test uses.
pub fn unique_database(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("fs_{tag}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}
