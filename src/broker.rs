//! The local Kafka-protocol broker of `fleetstream up`: nisshi, run as a child process.
//!
//! nisshi cannot be linked into our binary (it needs a newer compiler and ~400 crates), so we
//! supervise it: start it on SQLite storage in the data directory (it commits each produce before
//! acknowledging it, so an acknowledged position survives a kill -9), wait until it accepts
//! connections, restart it if it dies, and stop it after our own services have flushed. The
//! kernel kills it if we die without stopping it (`PR_SET_PDEATHSIG`), so no orphan holds the port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleetstream_kafka::nisshi;
use fleetstream_storage::config::pinned;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Restarts allowed within [`RESTART_WINDOW`] before `up` gives up and shuts down.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Where `scripts/setup` installs nisshi (the build `versions.env` names).
pub fn default_nisshi() -> PathBuf {
    fleetstream_storage::config::cache_dir()
        .join(format!("nisshi-{}-{}", pinned("NISSHI_VERSION"), pinned("NISSHI_FEATURES").replace(',', "-")))
        .join("bin")
        .join("nisshi")
}

/// A running broker, supervised until [`Broker::stop`].
pub struct Broker {
    pub address: String,
    supervisor: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
}

struct Spec {
    nisshi: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Broker {
    /// Starts nisshi with its data in `dir` on `127.0.0.1:port` and returns once it accepts
    /// connections. Cancels `failed` if the broker keeps dying.
    pub async fn start(nisshi: &Path, dir: &Path, port: u16, failed: CancellationToken) -> anyhow::Result<Broker> {
        if !nisshi.is_file() {
            bail!(
                "the nisshi broker is not installed at {}: run scripts/setup (it builds it once), or pass --nisshi",
                nisshi.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let spec = Spec { nisshi: nisshi.to_path_buf(), dir: dir.to_path_buf(), port };
        let child = spawn(&spec).await?;
        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(spec, child, stop.clone(), failed));
        Ok(Broker { address: format!("127.0.0.1:{port}"), supervisor, stop })
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.supervisor.await.context("broker supervisor")?
    }
}

async fn spawn(spec: &Spec) -> anyhow::Result<Child> {
    let log_path = spec.dir.join("broker.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let mut command = Command::from(nisshi::durable_broker(&spec.nisshi, &spec.dir, spec.port, "127.0.0.1"));
    command
        // Its own process group: a Ctrl-C at the terminal reaches only us, and we stop the
        // broker after our services have flushed to it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child when
    // the thread that spawned it (a runtime thread that lives as long as we do) exits.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| format!("start {}", spec.nisshi.display()))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the broker exited during start-up ({status}); see {}", log_path.display());
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", spec.port)).await.is_ok() {
            tracing::info!(
                port = spec.port,
                pid = child.id(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "broker ready"
            );
            return Ok(child);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill().await;
            bail!(
                "the broker did not accept connections on port {} within 30 s; see {}",
                spec.port,
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn supervise(
    spec: Spec,
    mut child: Child,
    stop: CancellationToken,
    failed: CancellationToken,
) -> anyhow::Result<()> {
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                tracing::error!(%status, log = %spec.dir.join("broker.log").display(), "the broker died; restarting it");
                restarts.retain(|t| t.elapsed() < RESTART_WINDOW);
                if restarts.len() >= MAX_RESTARTS {
                    failed.cancel();
                    bail!("the broker died {MAX_RESTARTS} times within {RESTART_WINDOW:?}; giving up");
                }
                restarts.push(Instant::now());
                tokio::time::sleep(Duration::from_millis(500)).await;
                child = match spawn(&spec).await {
                    Ok(child) => child,
                    Err(e) => {
                        failed.cancel();
                        return Err(e.context("restart the broker"));
                    }
                };
            }
            _ = stop.cancelled() => return terminate(child).await,
        }
    }
}

async fn terminate(mut child: Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid, which is not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => {
            tracing::info!(status = %status?, "broker stopped");
        }
        Err(_) => {
            tracing::warn!("the broker ignored SIGTERM for 10 s; killing it");
            child.kill().await?;
        }
    }
    Ok(())
}
