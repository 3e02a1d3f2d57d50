//! The two ways fleetstream reaches a ClickHouse engine, behind one small interface.
//!
//! - [`http`]: a ClickHouse server over HTTP (the official `clickhouse` crate) — production
//!   clusters, and Debian's ClickHouse 18.16 in CI;
//! - [`chdb`]: current ClickHouse running in-process (chDB, through its ADBC driver) — the
//!   embedded default of `fleetstream up`, data kept in a directory.
//!
//! Both run the very same SQL text from [`crate::sql`] and `schemas/migrations/`: `?` is a bound
//! value and `?fields` the row type's columns, as in the `clickhouse` crate.

pub(crate) mod chdb;
pub(crate) mod http;

use clickhouse::{Row, RowOwned, RowRead};
use serde::Serialize;

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Strs(Vec<String>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Str(v.to_string())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<u64> for Arg {
    fn from(v: u64) -> Self {
        Arg::UInt(v)
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Arg::UInt(v.into())
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Float(v)
    }
}
impl From<&[String]> for Arg {
    fn from(v: &[String]) -> Self {
        Arg::Strs(v.to_vec())
    }
}

/// Builds a `Vec<Arg>` from values of mixed types.
macro_rules! args {
    ($($v:expr),* $(,)?) => { vec![$($crate::engine::Arg::from($v)),*] };
}
pub(crate) use args;

/// What went wrong inside an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Http(#[from] clickhouse::error::Error),
    #[error("chDB: {0}")]
    Chdb(String),
    #[error("the query returned no rows")]
    NoRows,
}

/// Row types the engines can read (owned rows the `clickhouse` crate reads; chDB reads the same
/// serde types from JSON).
pub trait ReadRow: Row + RowOwned + RowRead + Send {}
impl<T: Row + RowOwned + RowRead + Send> ReadRow for T {}

/// Row types the engines can write.
pub trait WriteRow: Row + RowOwned + clickhouse::RowWrite + Serialize + Sync {}
impl<T: Row + RowOwned + clickhouse::RowWrite + Serialize + Sync> WriteRow for T {}

/// One ClickHouse engine holding fleetstream's database. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Engine {
    // Boxed: the HTTP client is large, the chDB handle one pointer.
    Http(Box<http::Http>),
    Chdb(chdb::Chdb),
}

type Result<T> = std::result::Result<T, EngineError>;

impl Engine {
    /// Runs a statement that returns no rows.
    pub async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<()> {
        match self {
            Engine::Http(e) => e.execute(sql, args).await,
            Engine::Chdb(e) => e.execute(sql, args).await,
        }
    }

    pub async fn fetch_all<T: ReadRow>(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<T>> {
        match self {
            Engine::Http(e) => e.fetch_all(sql, args).await,
            Engine::Chdb(e) => e.fetch_all(sql, args).await,
        }
    }

    /// The first row; an error when there is none.
    pub async fn fetch_one<T: ReadRow>(&self, sql: &str, args: Vec<Arg>) -> Result<T> {
        match self.fetch_optional(sql, args).await? {
            Some(row) => Ok(row),
            None => Err(EngineError::NoRows),
        }
    }

    pub async fn fetch_optional<T: ReadRow>(&self, sql: &str, args: Vec<Arg>) -> Result<Option<T>> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }

    /// Inserts the rows in one statement; returns once the engine holds all of them.
    pub async fn insert<T: WriteRow>(&self, table: &str, rows: &[T]) -> Result<()> {
        match self {
            Engine::Http(e) => e.insert(table, rows).await,
            Engine::Chdb(e) => e.insert(table, rows).await,
        }
    }
}
