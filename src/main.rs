//! The `fleetstream` command: one binary, one subcommand per service.
//!
//! Each subcommand is a thin shell over its library crate; `run` starts all three in one process
//! (handy on one machine). Ctrl-C or SIGTERM stops everything gracefully: ingest answers the
//! requests in flight and flushes, processors write their batch and commit.

use clap::{Parser, Subcommand};
use fleetstream_api::ApiConfig;
use fleetstream_ingest::{IngestConfig, Listeners, RegistryStore};
use fleetstream_kafka::KafkaConfig;
use fleetstream_processors::ProcessorConfig;
use fleetstream_storage::{ClickHouseConfig, Store};
use fleetstream_webhooks::WebhookConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod broker;
mod client;
#[cfg(test)]
mod compose_check;
mod up;

/// Many small, short-lived allocations per position (parsing, rows, messages): mimalloc spends
/// less CPU on them than glibc's malloc and gives memory back instead of keeping arenas resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its position in `mi_option_e` of mimalloc 3, which
/// libmimalloc-sys builds; the Rust bindings do not name it): how long freed pages stay resident
/// before they go back to the system.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A processor frees a whole batch at once: with mimalloc 3's default delay of a second, the
/// pages of the previous batches stayed resident while the next ones were built, 90 of a
/// processor's 210 MB peak in benches/pipeline.sh with batches of 50,000. Purging at once cost no
/// CPU measurable there.
///
/// The environment still decides when it sets the option, under any of the names mimalloc reads.
fn return_freed_memory_at_once() {
    if purge_delay_from_environment() {
        return;
    }
    // SAFETY: sets one of the allocator's options; mimalloc accepts any value at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// mimalloc reads `MIMALLOC_PURGE_DELAY`, or its old name `MIMALLOC_RESET_DELAY`, in any case.
fn purge_delay_from_environment() -> bool {
    std::env::vars_os().any(|(name, _)| {
        name.to_str().is_some_and(|n| {
            n.eq_ignore_ascii_case("MIMALLOC_PURGE_DELAY") || n.eq_ignore_ascii_case("MIMALLOC_RESET_DELAY")
        })
    })
}

#[derive(Debug, Parser)]
#[command(
    name = "fleetstream",
    version,
    about = "Live vehicle tracking: ingest -> Kafka -> processors -> ClickHouse -> query API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at startup; boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// The device-facing HTTP service: validates positions and produces them to Kafka.
    Ingest {
        #[command(flatten)]
        kafka: KafkaConfig,
        /// Read only with --require-registered (the device registry).
        #[command(flatten)]
        clickhouse: ClickHouseConfig,
        #[command(flatten)]
        ingest: IngestConfig,
    },
    /// A processor: consumes positions, enriches them and writes them to ClickHouse.
    Process {
        #[command(flatten)]
        kafka: KafkaConfig,
        #[command(flatten)]
        clickhouse: ClickHouseConfig,
        #[command(flatten)]
        processor: ProcessorConfig,
    },
    /// The query API for analysts and dashboards.
    Api {
        /// The output topics, for live streams.
        #[command(flatten)]
        kafka: KafkaConfig,
        #[command(flatten)]
        clickhouse: ClickHouseConfig,
        #[command(flatten)]
        api: ApiConfig,
    },
    /// Delivers geofence events to the webhooks registered through the API.
    Webhooks {
        #[command(flatten)]
        kafka: KafkaConfig,
        #[command(flatten)]
        clickhouse: ClickHouseConfig,
        #[command(flatten)]
        webhooks: WebhookConfig,
    },
    /// Applies ClickHouse migrations and checks the tables, then exits: run once before the
    /// services (compose's one-shot `migrate` service), so that they start on a ready schema.
    Migrate {
        #[command(flatten)]
        clickhouse: ClickHouseConfig,
    },
    /// The whole pipeline on this machine: a local broker and embedded ClickHouse, data kept in
    /// one directory.
    Up {
        #[command(flatten)]
        up: up::UpConfig,
        #[command(flatten)]
        ingest: IngestConfig,
        #[command(flatten)]
        processor: ProcessorConfig,
        #[command(flatten)]
        api: ApiConfig,
        #[command(flatten)]
        webhooks: WebhookConfig,
    },
    /// Sends recorded positions (CSV or NDJSON, optionally gzipped) through the ingest API.
    Replay {
        #[command(flatten)]
        replay: client::replay::ReplayConfig,
    },
    /// Drives a synthetic fleet through the ingest API, for load and demos.
    Simulate {
        #[command(flatten)]
        simulate: client::simulate::SimulateConfig,
    },
    /// Ingest, one processor, the API and the webhook deliverer in one process, against external
    /// Kafka and ClickHouse.
    Run {
        #[command(flatten)]
        kafka: KafkaConfig,
        #[command(flatten)]
        clickhouse: ClickHouseConfig,
        #[command(flatten)]
        ingest: IngestConfig,
        #[command(flatten)]
        processor: ProcessorConfig,
        #[command(flatten)]
        api: ApiConfig,
        #[command(flatten)]
        webhooks: WebhookConfig,
    },
}

fn main() -> anyhow::Result<()> {
    // Before any other thread allocates: mimalloc's options are plain variables.
    return_freed_memory_at_once();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    match cli.command {
        Command::Ingest { kafka, clickhouse, ingest } => {
            check_kafka(&kafka)?;
            let listeners = Listeners::bind(&ingest).await?;
            let registry = Some(RegistryStore::Connect(clickhouse));
            fleetstream_ingest::serve(ingest, kafka, registry, listeners, shutdown).await
        }
        Command::Process { kafka, clickhouse, processor } => {
            check_kafka(&kafka)?;
            let store = Store::open(&clickhouse).await?;
            fleetstream_processors::run(processor, kafka, store, Default::default(), shutdown).await
        }
        Command::Api { kafka, clickhouse, api } => {
            check_kafka(&kafka)?;
            let store = Store::open(&clickhouse).await?;
            let listener = bind(&api.api_listen).await?;
            fleetstream_api::serve_with(api, store, Some(kafka), listener, shutdown).await
        }
        Command::Webhooks { kafka, clickhouse, webhooks } => {
            check_kafka(&kafka)?;
            let store = Store::open(&clickhouse).await?;
            fleetstream_webhooks::run(webhooks, kafka, store, shutdown).await
        }
        Command::Migrate { clickhouse } => {
            let store = Store::open(&clickhouse).await?;
            let applied = store.applied_migrations().await?;
            let newest = applied.last().map(|m| m.version).unwrap_or(0);
            println!("{}: schema ready, {} migrations applied (newest {newest})", clickhouse.describe(), applied.len());
            Ok(())
        }
        Command::Up { up, ingest, processor, api, webhooks } => {
            up::up(up, Services { ingest, processor, api, webhooks }, shutdown).await
        }
        Command::Replay { replay } => {
            let summary = client::replay::replay(replay, shutdown).await?;
            anyhow::ensure!(summary.rejected == 0, "{} positions were rejected", summary.rejected);
            Ok(())
        }
        Command::Simulate { simulate } => client::simulate::simulate(simulate, shutdown).await,
        Command::Run { kafka, clickhouse, ingest, processor, api, webhooks } => {
            check_kafka(&kafka)?;
            let store = Store::open(&clickhouse).await?;
            run_all(kafka, store, Services { ingest, processor, api, webhooks }, shutdown, || {}).await
        }
    }
}

/// Refuses Kafka settings that cannot work before anything starts, and says (without secrets)
/// how the brokers will be reached.
fn check_kafka(kafka: &KafkaConfig) -> anyhow::Result<()> {
    kafka.validate()?;
    tracing::info!(kafka = %kafka.describe(), "Kafka connection settings");
    if kafka.security.sends_password_in_clear() {
        tracing::warn!("SASL PLAIN over SASL_PLAINTEXT sends the Kafka password unencrypted: use SASL_SSL");
    }
    Ok(())
}

/// The settings of the services `run` and `up` run in one process.
pub(crate) struct Services {
    pub ingest: IngestConfig,
    pub processor: ProcessorConfig,
    pub api: ApiConfig,
    pub webhooks: WebhookConfig,
}

/// Ingest, one processor, the API and the webhook deliverer in this process; prints where each
/// listens (and then `banner`) once all are bound. One service failing takes the others down
/// with it.
pub(crate) async fn run_all(
    kafka: KafkaConfig,
    store: Store,
    services: Services,
    shutdown: CancellationToken,
    banner: impl FnOnce(),
) -> anyhow::Result<()> {
    let Services { ingest, processor, api, webhooks } = services;
    let ingest_listeners = Listeners::bind(&ingest).await?;
    let api_listener = bind(&api.api_listen).await?;
    let api_addr = api_listener.local_addr()?;
    println!("dashboard: http://{api_addr}/");
    println!("api:       http://{api_addr}/v1/live/summary");
    println!("ingest:    http://{}/v1/positions", ingest_listeners.http.local_addr()?);
    if let Some(osmand) = &ingest_listeners.osmand {
        println!("osmand:    http://{}/", osmand.local_addr()?);
    }
    if let Some(teltonika) = &ingest_listeners.teltonika {
        println!("teltonika: tcp://{}", teltonika.local_addr()?);
    }
    if let Some(gt06) = &ingest_listeners.gt06 {
        println!("gt06:      tcp://{}", gt06.local_addr()?);
    }
    if !processor.metrics_listen.is_empty() {
        println!("metrics:   http://{}/metrics (ingest: /metrics on its own port)", processor.metrics_listen);
    }
    banner();
    let result = tokio::try_join!(
        fleetstream_ingest::serve(
            ingest,
            kafka.clone(),
            Some(RegistryStore::Open(store.clone())),
            ingest_listeners,
            shutdown.clone()
        ),
        fleetstream_processors::run(processor, kafka.clone(), store.clone(), Default::default(), shutdown.clone()),
        fleetstream_api::serve_with(api, store.clone(), Some(kafka.clone()), api_listener, shutdown.clone()),
        fleetstream_webhooks::run(webhooks, kafka, store, shutdown.clone()),
    );
    shutdown.cancel();
    result.map(|_| ())
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Catches clashing flag names between the flattened configs.
    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_setting_has_an_environment_variable() {
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments().filter(|a| a.get_long().is_some() && a.get_id() != "help") {
                let env = arg.get_env().unwrap_or_else(|| panic!("--{} has no env var", arg.get_long().unwrap()));
                assert!(env.to_str().unwrap().starts_with("FLEETSTREAM_"), "{env:?}");
            }
        }
    }
}

#[cfg(test)]
mod allocator_tests {
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads an allocator option.
        unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn the_purge_delay_is_the_option_set_unless_the_environment_sets_it() {
        let before = purge_delay();
        super::return_freed_memory_at_once();
        if super::purge_delay_from_environment() {
            assert_eq!(purge_delay(), before, "the environment's value is kept");
            return;
        }
        // Its default is 1,000 ms, which no option beside it has: a wrong position would not read it.
        assert_eq!(before, 1000, "mimalloc's purge_delay moved; see MI_OPTION_PURGE_DELAY");
        assert_eq!(purge_delay(), 0);
    }
}
