//! `fleetstream up`: the whole pipeline on one machine, with nothing else installed.
//!
//! A local Kafka-protocol broker (nisshi, supervised as a child; see [`crate::broker`]) and
//! current ClickHouse embedded in this process (chDB), both keeping their data under one data
//! directory that survives restarts; ingest, one processor, the API and the webhook deliverer on
//! top, exactly as `fleetstream run` runs them against external clusters.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use fleetstream_kafka::KafkaConfig;
use fleetstream_storage::{ClickHouseConfig, Store};
use tokio_util::sync::CancellationToken;

use crate::Services;
use crate::broker::{self, Broker};

#[derive(Debug, Clone, Args)]
pub struct UpConfig {
    /// Directory for all data (broker log and database, ClickHouse tables); created if missing.
    #[arg(long = "data-dir", env = "FLEETSTREAM_DATA_DIR", default_value = ".fleetstream")]
    pub data_dir: PathBuf,
    /// Port of the local Kafka-protocol broker (127.0.0.1).
    #[arg(long = "broker-port", env = "FLEETSTREAM_BROKER_PORT", default_value_t = 9092)]
    pub broker_port: u16,
    /// The nisshi broker binary; by default where `scripts/setup` builds it.
    #[arg(long = "nisshi", env = "FLEETSTREAM_NISSHI")]
    pub nisshi: Option<PathBuf>,
    /// chDB's engine library; by default where `scripts/setup` installs it.
    #[arg(long = "chdb-lib", env = "FLEETSTREAM_CHDB_LIB")]
    pub chdb_lib: Option<PathBuf>,
    /// Partitions of the topics `up` creates (existing topics are left alone). One: `up` runs
    /// one processor, and the embedded broker reads every partition on every fetch from SQLite,
    /// so partitions cost CPU even when idle (0.07 CPU s per second with 1 partition, 0.29 with
    /// 8) and under load (a quarter more broker CPU per position with 8, and a fifth less
    /// throughput end to end: `benches/pipeline.sh up`, benches/README.md).
    #[arg(long = "topic-partitions", env = "FLEETSTREAM_TOPIC_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub topic_partitions: i32,
}

pub(crate) async fn up(config: UpConfig, services: Services, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = &config.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("create the data directory {}", data.display()))?;
    // Two stacks on one directory would corrupt both the broker's and ClickHouse's files.
    let lock = std::fs::File::create(data.join("fleetstream.lock"))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!("{} is in use by another `fleetstream up`; stop it or pass --data-dir", data.display())
    })?;

    let nisshi = config.nisshi.clone().unwrap_or_else(broker::default_nisshi);
    let broker = Broker::start(&nisshi, &data.join("broker"), config.broker_port, shutdown.clone()).await?;
    let clickhouse = ClickHouseConfig {
        chdb_lib: config.chdb_lib.clone(),
        ..ClickHouseConfig::embedded(data.join("clickhouse"), "fleetstream")
    };
    let store = match Store::open(&clickhouse).await {
        Ok(store) => store,
        Err(e) => {
            broker.stop().await?;
            return Err(e.into());
        }
    };
    let kafka = KafkaConfig { topic_partitions: config.topic_partitions, ..KafkaConfig::local(&broker.address) };
    let result = crate::run_all(kafka, store, services, shutdown.clone(), || {
        println!("broker:  {} (nisshi, data in {})", broker.address, data.join("broker").display());
        println!("storage: {}", clickhouse.describe());
        println!("ready in {} ms; Ctrl-C stops everything", started.elapsed().as_millis());
    })
    .await;
    // The broker goes last: ingest has flushed and the processor committed by now.
    shutdown.cancel();
    broker.stop().await?;
    drop(lock);
    result
}
