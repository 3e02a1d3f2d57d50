//! A lock so that one process at a time applies migrations to a database.
//!
//! Every processor and the API migrate at startup, and on a first start (or an upgrade) several
//! start together. Most statements are idempotent, but a migration that copies a table and swaps
//! it in by RENAME (0006) is not safe to interleave: two copies, two renames, and one process
//! drops what the other just filled. ClickHouse has no transactions; what it does have is that
//! exactly one `CREATE TABLE` of a name succeeds. So the lock is a table: whoever creates it
//! holds it, writes who it is and since when, migrates, and drops it. The others wait, and then
//! read the ledger again: usually there is nothing left to do.
//!
//! A holder that died leaves its table behind. A lock older than [`STALE_AFTER`] (by the
//! server's clock), or one still without its holder row after [`STALE_EMPTY_AFTER`], is taken
//! for abandoned and dropped; a live migration of that length would have to be a copy of a very
//! large table, and the log says who held it.
//!
//! On a cluster the lock is created and dropped `ON CLUSTER`, and carries its holder in its
//! definition (see `sql::migration_lock_create_on_cluster`): two processes connected to
//! different servers exclude each other just the same.

use std::time::{Duration, Instant};

use clickhouse::Row;
use serde::Deserialize;

use super::cluster::Cluster;
use super::read_catalog;
use crate::engine::{Arg, Engine, args};
use crate::error::{Context, Result};
use crate::sql;

/// Age after which a held lock is taken for abandoned.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How long a lock table may stay without its holder row (its creator died between the two
/// statements) before it is taken for abandoned.
pub const STALE_EMPTY_AFTER: Duration = Duration::from_secs(60);
/// Between two looks at a held lock.
const POLL: Duration = Duration::from_millis(250);
/// How many reads of a held lock may fail in a row before the error is reported: the lock was
/// released between our look and our read (the next round takes it), or, on a cluster, the read
/// of `system.tables` met the holder's DDL (see `read_catalog`). 40 are 10 s of a server that
/// keeps failing.
const READ_ATTEMPTS: u32 = 40;
/// Between two log lines about the same wait.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The holder row of the lock table, with its age by the server's clock.
#[derive(Debug, Row, Deserialize)]
struct Holder {
    holder: String,
    age_secs: u64,
}

/// The migration lock while this process holds it. Release with [`MigrationLock::release`];
/// a holder that fails releases too (see [`with_lock`]).
pub(crate) struct MigrationLock<'a> {
    client: &'a Engine,
    statements: Statements,
}

impl MigrationLock<'_> {
    pub(crate) async fn release(self) -> Result<()> {
        self.client.execute(&self.statements.drop, args![]).await.context("release the migration lock")
    }
}

/// The lock's statements, on one server or on a cluster.
struct Statements {
    /// Takes the lock, with the holder's name bound.
    create: String,
    /// Records the holder after `create` (one server only; on a cluster `create` records it).
    hold: Option<&'static str>,
    holder: &'static str,
    drop: String,
}

impl Statements {
    fn new(cluster: Option<&Cluster>) -> Statements {
        match cluster {
            None => Statements {
                create: sql::MIGRATION_LOCK_CREATE.into(),
                hold: Some(sql::MIGRATION_LOCK_HOLD),
                holder: sql::MIGRATION_LOCK_HOLDER,
                drop: sql::MIGRATION_LOCK_DROP.into(),
            },
            Some(cluster) => Statements {
                create: sql::migration_lock_create_on_cluster(cluster.name(), cluster.database()),
                hold: None,
                holder: sql::MIGRATION_LOCK_HOLDER_ON_CLUSTER,
                drop: sql::migration_lock_drop_on_cluster(cluster.name(), cluster.database()),
            },
        }
    }

    /// The values `create` binds.
    fn create_args(&self, me: &str) -> Vec<Arg> {
        if self.hold.is_some() { args![] } else { args![me] }
    }
}

/// Runs `work` while holding the migration lock, waiting for it as long as another live
/// process holds it; releases it whether `work` succeeds or not.
pub(crate) async fn with_lock<T, F>(client: &Engine, cluster: Option<&Cluster>, work: F) -> Result<T>
where
    F: AsyncFnOnce() -> Result<T>,
{
    let lock = acquire(client, cluster).await?;
    let result = work().await;
    let released = lock.release().await;
    let value = result?;
    released?;
    Ok(value)
}

/// Waits until this process holds the lock.
pub(crate) async fn acquire<'a>(client: &'a Engine, cluster: Option<&Cluster>) -> Result<MigrationLock<'a>> {
    let statements = Statements::new(cluster);
    let me = holder_name();
    let mut empty_since: Option<Instant> = None;
    let mut logged_at: Option<Instant> = None;
    let mut failed_creates = 0;
    let mut failed_reads = 0;
    loop {
        let created = client.execute(&statements.create, statements.create_args(&me)).await;
        let Err(create_error) = created else {
            if let Some(hold) = statements.hold {
                client.execute(hold, args![me.as_str()]).await.context("record the migration lock")?;
            }
            tracing::debug!(holder = %me, "migration lock taken");
            return Ok(MigrationLock { client, statements });
        };
        // Creating failed: someone holds it, or the engine is failing. Which one?
        if !lock_exists(client).await? {
            // Released between our attempt and our look, or the CREATE failed for a reason of
            // its own: that one fails again, and then it is the error to report.
            failed_creates += 1;
            if failed_creates >= 3 {
                return Err(create_error).context("take the migration lock");
            }
            continue;
        }
        failed_creates = 0;
        let holder: Option<Holder> = match client.fetch_optional(statements.holder, args![]).await {
            Ok(holder) => holder,
            Err(e) if failed_reads + 1 < READ_ATTEMPTS => {
                failed_reads += 1;
                tracing::debug!(error = %e, "reading the migration lock failed; looking again");
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => return Err(e).context("read the migration lock"),
        };
        failed_reads = 0;
        let abandoned = match &holder {
            Some(h) => Duration::from_secs(h.age_secs) >= STALE_AFTER,
            None => empty_since.get_or_insert_with(Instant::now).elapsed() >= STALE_EMPTY_AFTER,
        };
        if abandoned {
            tracing::warn!(holder = ?holder.map(|h| h.holder), "the migration lock looks abandoned; taking it over");
            client.execute(&statements.drop, args![]).await.context("drop an abandoned migration lock")?;
            empty_since = None;
            continue;
        }
        if holder.is_some() {
            empty_since = None;
        }
        if logged_at.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            let holder = holder.as_ref().map(|h| (h.holder.as_str(), h.age_secs));
            tracing::info!(
                ?holder,
                "another process is migrating this database; waiting for it (holder, seconds held)"
            );
            logged_at = Some(Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the lock table exists.
async fn lock_exists(client: &Engine) -> Result<bool> {
    let count: u64 =
        read_catalog("look for the migration lock", || client.fetch_one(sql::MIGRATION_LOCK_EXISTS, args![])).await?;
    Ok(count > 0)
}

/// Who holds the lock, for the log of whoever waits: host and process.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}
