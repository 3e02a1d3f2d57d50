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
    /// A `--clickhouse-cluster` that cannot be used (a name that is no identifier, or chDB).
    #[error("--clickhouse-cluster: {0}")]
    Cluster(String),
    /// A CA file that cannot be used, or a TLS set-up that failed before any connection.
    #[error("ClickHouse TLS: {0}")]
    Tls(String),
    /// The server could not be reached at all: refused, timed out, or (over HTTPS) a certificate
    /// that the trusted CAs did not sign. `reason` is the whole chain of causes.
    #[error("ClickHouse at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
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

impl StoreError {
    /// Whether ClickHouse refused the data or the query itself, so that retrying the same request
    /// cannot succeed (a malformed value, a block over a limit): the caller must isolate and
    /// set aside what was refused instead of retrying it forever. Everything else — connections,
    /// timeouts, an overloaded or read-only server, a missing table or wrong password that an
    /// operator can fix — is transient and worth retrying.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::ClickHouse { source, .. } => source.is_permanent(),
            StoreError::Migration { .. }
            | StoreError::Shape { .. }
            | StoreError::DatabaseName(_)
            | StoreError::Cluster(_)
            | StoreError::Tls(_)
            | StoreError::Unreachable { .. } => false,
        }
    }
}

impl StoreError {
    /// A network failure of the first request, as [`StoreError::Unreachable`] with every cause
    /// spelled out (hyper's own message is only "client error (Connect)") and, for a
    /// certificate the CAs did not sign, what to check. Other errors are returned as they are.
    pub(crate) fn unreachable(self, config: &crate::ClickHouseConfig) -> StoreError {
        let StoreError::ClickHouse { source: EngineError::Http(clickhouse::error::Error::Network(network)), .. } =
            &self
        else {
            return self;
        };
        let mut reason = network.to_string();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = network.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !reason.contains(&text) {
                reason += &format!(": {text}");
            }
            cause = error.source();
        }
        if reason.contains("invalid peer certificate") || reason.contains("certificate") {
            reason += match &config.ca_file {
                Some(_) => {
                    " (the server's certificate is not signed by a CA in --clickhouse-ca-file, or is not for this host name)"
                }
                None => {
                    " (the server's certificate is not signed by a public CA: pass its CA with --clickhouse-ca-file)"
                }
            };
        } else if reason.contains("InvalidContentType") || reason.contains("corrupt message") {
            reason += " (is this an HTTPS port? use http:// for a plain HTTP port)";
        }
        StoreError::Unreachable { url: crate::config::redact_url(&config.url), reason }
    }
}

impl EngineError {
    /// See [`StoreError::is_permanent`].
    pub fn is_permanent(&self) -> bool {
        use clickhouse::error::Error as Http;
        match self {
            EngineError::Http(Http::BadResponse(text)) => is_permanent_exception(text),
            EngineError::Http(Http::Network(_) | Http::TimedOut | Http::Compression(_) | Http::Decompression(_)) => {
                false
            }
            // Rows that cannot be encoded or decoded: the same rows fail the same way again.
            EngineError::Http(_) => true,
            EngineError::Chdb(text) => is_permanent_exception(text),
            EngineError::NoRows => true,
        }
    }
}

/// UNKNOWN_TABLE.
const UNKNOWN_TABLE: u32 = 60;

impl EngineError {
    /// "Table … doesn't exist".
    pub fn is_unknown_table(&self) -> bool {
        let text = match self {
            EngineError::Http(clickhouse::error::Error::BadResponse(text)) | EngineError::Chdb(text) => text,
            _ => return false,
        };
        exception_code(text) == Some(UNKNOWN_TABLE)
    }
}

/// ClickHouse exception codes that mean "this data or this query is refused" (from
/// `src/Common/ErrorCodes.cpp`; the numbers are stable across releases).
const PERMANENT_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    53,  // TYPE_MISMATCH
    62,  // SYNTAX_ERROR (also: max query size exceeded)
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    130, // CANNOT_READ_ARRAY_FROM_TEXT
    131, // TOO_LARGE_STRING_SIZE
    153, // ILLEGAL_DIVISION
    167, // TOO_DEEP_AST
    168, // TOO_BIG_AST
    190, // SIZES_OF_ARRAYS_DOESNT_MATCH
    306, // TOO_DEEP_RECURSION
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
    469, // VIOLATED_CONSTRAINT
    691, // UNKNOWN_ELEMENT_OF_ENUM
];

/// 252 is both "too many parts" (merges are behind: transient) and "too many partitions for
/// single INSERT block" (the block itself: permanent); the message tells them apart.
const TOO_MANY_PARTS: u32 = 252;

fn is_permanent_exception(text: &str) -> bool {
    match exception_code(text) {
        Some(TOO_MANY_PARTS) => text.contains("for single INSERT block"),
        Some(code) => PERMANENT_CODES.contains(&code),
        None => false,
    }
}

/// The code of a ClickHouse exception message: `Code: 252, e.displayText() = DB::Exception: ...`
/// (18.16) or `Code: 252. DB::Exception: ...` (current).
pub fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(text: &str) -> EngineError {
        EngineError::Http(clickhouse::error::Error::BadResponse(text.into()))
    }

    #[test]
    fn codes_are_read_from_both_generations_of_messages() {
        assert_eq!(exception_code("Code: 252, e.displayText() = DB::Exception: Too many"), Some(252));
        assert_eq!(exception_code("bad response: Code: 62. DB::Exception: Syntax error"), Some(62));
        assert_eq!(exception_code("503 Service Unavailable"), None);
        assert_eq!(exception_code("Code: x"), None);
    }

    #[test]
    fn a_vanished_table_is_told_apart_from_other_errors() {
        assert!(
            http("Code: 60, e.displayText() = DB::Exception: Table db.positions_0006_local doesn't exist.")
                .is_unknown_table()
        );
        assert!(EngineError::Chdb("Code: 60. DB::Exception: Table db.t does not exist".into()).is_unknown_table());
        assert!(!http("Code: 57, e.displayText() = DB::Exception: Table db.t already exists.").is_unknown_table());
        assert!(!http("Code: 600, e.displayText() = DB::Exception: other").is_unknown_table());
        assert!(!EngineError::NoRows.is_unknown_table());
    }

    #[test]
    fn refused_data_is_permanent_and_everything_else_transient() {
        let partitions =
            "Code: 252, e.displayText() = DB::Exception: Too many partitions for single INSERT block (more than 100).";
        assert!(http(partitions).is_permanent());
        assert!(
            !http("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower")
                .is_permanent()
        );
        assert!(http("Code: 62. DB::Exception: Syntax error: Max query size exceeded").is_permanent());
        assert!(
            EngineError::Chdb("Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero".into())
                .is_permanent()
        );
        for transient in [
            "Code: 241. DB::Exception: Memory limit (total) exceeded",
            "Code: 60. DB::Exception: Table fleetstream.positions doesn't exist",
            "Code: 516. DB::Exception: default: Authentication failed",
            "Code: 202. DB::Exception: Too many simultaneous queries",
            "502 Bad Gateway",
        ] {
            assert!(!http(transient).is_permanent(), "{transient}");
        }
        assert!(!EngineError::Http(clickhouse::error::Error::TimedOut).is_permanent());
        assert!(!EngineError::Chdb("another result stream is still open".into()).is_permanent());
        let wrapped = StoreError::ClickHouse { context: "insert".into(), source: http(partitions) };
        assert!(wrapped.is_permanent());
    }
}
