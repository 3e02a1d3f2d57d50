//! Storage errors, each saying what we were doing when ClickHouse refused.

pub use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse: {context}: {source}")]
    ClickHouse {
        context: String,
        #[source]
        source: EngineError,
    },
    #[error("migration {name}: {reason}")]
    Migration { name: String, reason: String },
    #[error("table {table} does not match the row type: {reason}")]
    Shape { table: String, reason: String },
    #[error("invalid database name {0:?}: use letters, digits and underscores")]
    DatabaseName(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Adds what we were doing to an engine error.
pub(crate) trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for Result<T, EngineError> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| StoreError::ClickHouse { context: context.into(), source })
    }
}
