//! Current ClickHouse in-process: chDB's engine (PyPI `chdb-core`), through its ADBC driver.
//!
//! What was measured of chDB 26.9 on these machines, and this module relies on:
//! - the driver library needs libpython3.11's symbols in the process (Python itself is never
//!   started), so libpython is loaded with `RTLD_GLOBAL` first and kept loaded;
//! - one data directory per process: the first open fixes it, and every [`Chdb`] (one ADBC
//!   connection, one ClickHouse session) shares it; each session `USE`s its own database;
//! - server-side `{name:Type}` parameters fail through ADBC, so `?` values are rendered as SQL
//!   literals here, escaped as the `clickhouse` crate escapes them for the HTTP engine.
//!
//! Rows travel as JSON: results come back as one `JSONCompactEachRow` string per row (read into
//! the same serde row types the HTTP engine reads from RowBinary), and inserts send
//! `INSERT ... FORMAT JSONEachRow` with the rows inline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use adbc_core::options::{AdbcVersion, OptionDatabase, OptionValue};
use adbc_core::{Connection, Database, Driver, Statement};
use adbc_driver_manager::{ManagedConnection, ManagedDatabase, ManagedDriver};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};

use super::{Arg, EngineError, ReadRow, WriteRow};

/// The Python runtime library whose symbols chDB's driver expects.
const LIBPYTHON: &str = "libpython3.11.so.1.0";

/// Columns of type `Enum8`: JSON output would name the value, while the row types read its Int8
/// code (as RowBinary delivers it), so `?fields` reads them through `toInt8`.
const ENUM8_COLUMNS: &[&str] = &["event_type"];

/// Settings for every result: 64-bit integers as JSON numbers, not strings.
const RESULT_SETTINGS: &str = "SETTINGS output_format_json_quote_64bit_integers = 0";

struct Opened {
    dir: PathBuf,
    database: ManagedDatabase,
    // Kept so that the driver library stays loaded for the life of the process.
    _driver: ManagedDriver,
}

static PROCESS: OnceLock<Mutex<Option<Opened>>> = OnceLock::new();

/// Sessions per [`Chdb`]: chDB runs one statement at a time per connection, so concurrent
/// callers (API requests, processor batches) each take a free one.
const SESSIONS: usize = 4;

#[derive(Clone)]
pub(crate) struct Chdb {
    sessions: Arc<Sessions>,
}

struct Sessions {
    connections: Vec<Mutex<ManagedConnection>>,
    next: AtomicUsize,
}

impl Sessions {
    /// Runs `f` on a free session, or waits for one (callers are on blocking threads).
    fn with<R>(&self, f: impl FnOnce(&mut ManagedConnection) -> R) -> R {
        for connection in &self.connections {
            if let Ok(mut guard) = connection.try_lock() {
                return f(&mut guard);
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let mut guard = self.connections[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Chdb(format!("{what}: {e}"))
}

fn adbc_err(what: &str, e: adbc_core::error::Error) -> EngineError {
    err(what, e.message)
}

impl Chdb {
    /// Opens (or joins) the process's chDB engine on `dir`, creates `database` if missing and
    /// returns a session that uses it.
    pub async fn open(library: &Path, dir: &Path, database: &str) -> Result<Chdb, EngineError> {
        let (library, dir, database) = (library.to_path_buf(), dir.to_path_buf(), database.to_string());
        tokio::task::spawn_blocking(move || {
            let mut connections = Vec::with_capacity(SESSIONS);
            for _ in 0..SESSIONS {
                let mut connection = connect(&library, &dir)?;
                run_update(&mut connection, &format!("CREATE DATABASE IF NOT EXISTS {database}"))?;
                run_update(&mut connection, &format!("USE {database}"))?;
                connections.push(Mutex::new(connection));
            }
            Ok(Chdb { sessions: Arc::new(Sessions { connections, next: AtomicUsize::new(0) }) })
        })
        .await
        .map_err(|e| err("open task", e))?
    }

    pub async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<(), EngineError> {
        let text = render(sql, &[], &args)?;
        let sessions = self.sessions.clone();
        blocking(move || sessions.with(|connection| run_update(connection, &text))).await
    }

    pub async fn fetch_all<T: ReadRow>(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<T>, EngineError> {
        let inner = render(sql, T::COLUMN_NAMES, &args)?;
        let text = format!("SELECT formatRowNoNewline('JSONCompactEachRow', *) FROM ({inner}) {RESULT_SETTINGS}");
        let sessions = self.sessions.clone();
        blocking(move || {
            let batches = sessions.with(|connection| run_query(connection, &text))?;
            let mut rows = Vec::new();
            for batch in &batches {
                read_rows::<T>(batch, &mut rows)?;
            }
            Ok(rows)
        })
        .await
    }

    pub async fn insert<T: WriteRow>(&self, table: &str, rows: &[T]) -> Result<(), EngineError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut text = format!("INSERT INTO {table} FORMAT JSONEachRow\n");
        for row in rows {
            let line = serde_json::to_string(row).map_err(|e| err("encode a row", e))?;
            text.push_str(&line);
            text.push('\n');
        }
        let sessions = self.sessions.clone();
        blocking(move || sessions.with(|connection| run_update(connection, &text))).await
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, EngineError> + Send + 'static,
) -> Result<R, EngineError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| err("query task", e))?
}

/// A new session on the process's engine, loading and opening it on first use.
fn connect(library: &Path, dir: &Path) -> Result<ManagedConnection, EngineError> {
    let mut process = PROCESS.get_or_init(|| Mutex::new(None)).lock().unwrap_or_else(|p| p.into_inner());
    if process.is_none() {
        *process = Some(load(library, dir)?);
    }
    let opened = process.as_ref().expect("opened above");
    if opened.dir != dir {
        return Err(EngineError::Chdb(format!(
            "chDB allows one data directory per process: {} is open, {} was asked for",
            opened.dir.display(),
            dir.display()
        )));
    }
    opened.database.new_connection().map_err(|e| adbc_err("open a session", e))
}

fn load(library: &Path, dir: &Path) -> Result<Opened, EngineError> {
    if !library.is_file() {
        return Err(EngineError::Chdb(format!(
            "the chDB library {} does not exist; `scripts/setup` (or `scripts/up`) installs it, or set FLEETSTREAM_CHDB_LIB",
            library.display()
        )));
    }
    // SAFETY: libpython's initialisers only register symbols; Python is never started. The
    // handle is leaked on purpose: the driver resolves symbols from it for the process's life.
    let python = unsafe {
        libloading::os::unix::Library::open(
            Some(LIBPYTHON),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
        )
    }
    .map_err(|e| err(&format!("load {LIBPYTHON} (Debian package libpython3.11), which chDB needs"), e))?;
    std::mem::forget(python);
    std::fs::create_dir_all(dir).map_err(|e| err(&format!("create {}", dir.display()), e))?;
    let started = std::time::Instant::now();
    let mut driver = ManagedDriver::load_dynamic_from_filename(library, Some(b"chdb_adbc_init"), AdbcVersion::V110)
        .map_err(|e| adbc_err(&format!("load {}", library.display()), e))?;
    let path = dir.to_str().ok_or_else(|| EngineError::Chdb(format!("{} is not UTF-8", dir.display())))?;
    let database = driver
        .new_database_with_opts([(OptionDatabase::Other("path".into()), OptionValue::String(path.into()))])
        .map_err(|e| adbc_err(&format!("open chDB in {}", dir.display()), e))?;
    tracing::info!(dir = %dir.display(), elapsed_ms = started.elapsed().as_millis() as u64, "chDB engine loaded");
    Ok(Opened { dir: dir.to_path_buf(), database, _driver: driver })
}

fn run_update(connection: &mut ManagedConnection, sql: &str) -> Result<(), EngineError> {
    let mut statement = connection.new_statement().map_err(|e| adbc_err("new statement", e))?;
    statement.set_sql_query(sql).map_err(|e| adbc_err("set query", e))?;
    statement.execute_update().map_err(|e| adbc_err(&abbreviate(sql), e))?;
    Ok(())
}

fn run_query(connection: &mut ManagedConnection, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    let mut statement = connection.new_statement().map_err(|e| adbc_err("new statement", e))?;
    statement.set_sql_query(sql).map_err(|e| adbc_err("set query", e))?;
    let reader = statement.execute().map_err(|e| adbc_err(&abbreviate(sql), e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| err("read results", e))
}

/// The head of a statement, for error messages (inserts carry their rows inline).
fn abbreviate(sql: &str) -> String {
    match sql.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &sql[..cut]),
        None => sql.to_string(),
    }
}

/// Each row of the single string column, read as a `T`.
fn read_rows<T: ReadRow>(batch: &RecordBatch, out: &mut Vec<T>) -> Result<(), EngineError> {
    let column = batch.column(0);
    let strings = column
        .as_string_opt::<i32>()
        .ok_or_else(|| EngineError::Chdb(format!("unexpected result column type {}", column.data_type())))?;
    for i in 0..strings.len() {
        out.push(parse_row(strings.value(i))?);
    }
    Ok(())
}

/// One `JSONCompactEachRow` line as a `T`: structs and tuples from the array, a single value
/// (`SELECT max(version)`) from its only element.
fn parse_row<T: ReadRow>(line: &str) -> Result<T, EngineError> {
    // `T::Value<'_>` is `T` itself (an owned row); spelled this way, serde sees its impl.
    let parsed = if T::COLUMN_COUNT == 1 && T::COLUMN_NAMES.is_empty() {
        serde_json::from_str::<(T::Value<'_>,)>(line).map(|(v,)| v)
    } else {
        serde_json::from_str::<T::Value<'_>>(line)
    };
    parsed.map_err(|e| err(&format!("read row {}", abbreviate(line)), e))
}

/// The SQL text with `?fields` replaced by `columns` and each `?` by its value as a literal.
fn render(sql: &str, columns: &[&str], args: &[Arg]) -> Result<String, EngineError> {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut args = args.iter();
    let mut rest = sql;
    while let Some(at) = rest.find('?') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix("fields") {
            rest = after;
            push_columns(&mut out, columns);
        } else {
            let arg = args.next().ok_or_else(|| EngineError::Chdb(format!("too few values for {sql:?}")))?;
            push_literal(&mut out, arg);
        }
    }
    out.push_str(rest);
    if args.next().is_some() {
        return Err(EngineError::Chdb(format!("too many values for {sql:?}")));
    }
    Ok(out)
}

fn push_columns(out: &mut String, columns: &[&str]) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if ENUM8_COLUMNS.contains(column) {
            let _ = write!(out, "toInt8(`{column}`) AS `{column}`");
        } else {
            let _ = write!(out, "`{column}`");
        }
    }
}

fn push_literal(out: &mut String, arg: &Arg) {
    match arg {
        Arg::Str(v) => push_string(out, v),
        Arg::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Arg::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        Arg::Float(v) if v.is_nan() => out.push_str("nan"),
        Arg::Float(v) if v.is_infinite() => out.push_str(if *v > 0.0 { "inf" } else { "-inf" }),
        Arg::Float(v) => {
            let _ = write!(out, "{v:?}");
        }
        Arg::Strs(values) => {
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, v);
            }
            out.push(']');
        }
    }
}

/// A single-quoted ClickHouse string literal: backslash and quote escaped, as the `clickhouse`
/// crate does for the HTTP engine.
fn push_string(out: &mut String, value: &str) {
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn placeholders_become_escaped_literals() {
        let sql = render(
            "SELECT ?fields FROM t WHERE a = ? AND b > ? AND c < ? AND has(?, d) AND e = ?",
            &["a", "event_type"],
            &[
                Arg::Str("x' OR 1=1 --\\".into()),
                Arg::Int(-5),
                Arg::Float(0.1),
                Arg::Strs(vec!["p".into(), "q'".into()]),
                Arg::UInt(u64::MAX),
            ],
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT `a`, toInt8(`event_type`) AS `event_type` FROM t WHERE a = 'x\\' OR 1=1 --\\\\' AND b > -5 AND c < 0.1 \
             AND has(['p','q\\''], d) AND e = 18446744073709551615"
        );
    }

    #[test]
    fn value_counts_must_match() {
        assert!(render("SELECT ?", &[], &[]).is_err());
        assert!(render("SELECT 1", &[], &[Arg::Int(1)]).is_err());
    }

    #[test]
    fn floats_render_exactly() {
        let mut s = String::new();
        push_literal(&mut s, &Arg::Float(1e300));
        assert_eq!(s.parse::<f64>().unwrap(), 1e300);
    }

    #[test]
    fn single_values_and_rows_parse() {
        assert_eq!(parse_row::<u64>("[18446744073709551615]").unwrap(), u64::MAX);
        assert_eq!(parse_row::<(String, u64)>(r#"["a", 3]"#).unwrap(), ("a".to_string(), 3));
        assert!(parse_row::<u64>(r#"["x"]"#).is_err());
    }

    proptest! {
        /// Whatever the string, its literal is one quoted token whose unescaping gives it back.
        #[test]
        fn string_literals_round_trip(value in ".*") {
            let mut literal = String::new();
            push_string(&mut literal, &value);
            let inner = &literal[1..literal.len() - 1];
            let mut back = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                prop_assert_ne!(c, '\'', "an unescaped quote would end the literal");
                if c == '\\' {
                    back.push(chars.next().expect("escape is followed by a character"));
                } else {
                    back.push(c);
                }
            }
            prop_assert_eq!(back, value);
        }
    }
}
