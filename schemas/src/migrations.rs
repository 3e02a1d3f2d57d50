//! The ClickHouse DDL as ordered migrations, compiled into the binary.
//!
//! Rules: a migration that has been released is never edited (the ledger stores a checksum and
//! startup refuses a mismatch); every statement is idempotent (`IF NOT EXISTS`); and every
//! statement runs on both ClickHouse 18.16 and current ClickHouse.

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Creates the ledger table that records applied migrations.
pub const LEDGER_DDL: &str = include_str!("../migrations/ledger.sql");

/// All migrations, in the order they apply.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_positions", sql: include_str!("../migrations/0001_positions.sql") },
    Migration { version: 2, name: "0002_device_latest", sql: include_str!("../migrations/0002_device_latest.sql") },
    Migration { version: 3, name: "0003_geofencing", sql: include_str!("../migrations/0003_geofencing.sql") },
    Migration { version: 4, name: "0004_device_registry", sql: include_str!("../migrations/0004_device_registry.sql") },
    Migration { version: 5, name: "0005_pipeline_stats", sql: include_str!("../migrations/0005_pipeline_stats.sql") },
];

/// For `ALTER TABLE <table> ADD COLUMN <column> ...`, the table and column: the migrator runs
/// such a statement only when the column is missing (18.16 has no `ADD COLUMN IF NOT EXISTS`).
pub fn added_column(statement: &str) -> Option<(&str, &str)> {
    let mut words = statement.split_whitespace();
    let keywords = [words.next()?, words.next()?];
    if !keywords[0].eq_ignore_ascii_case("ALTER") || !keywords[1].eq_ignore_ascii_case("TABLE") {
        return None;
    }
    let table = words.next()?;
    let (add, column) = (words.next()?, words.next()?);
    if !add.eq_ignore_ascii_case("ADD") || !column.eq_ignore_ascii_case("COLUMN") {
        return None;
    }
    Some((table, words.next()?))
}

impl Migration {
    /// FNV-1a over the file's text: detects an edited migration without a crypto dependency.
    pub fn checksum(&self) -> u64 {
        checksum(self.sql)
    }

    /// The statements of this migration, one per HTTP request.
    pub fn statements(&self) -> Vec<String> {
        statements(self.sql)
    }
}

/// FNV-1a, 64 bit.
pub fn checksum(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Splits a file into statements: `--` comment lines are dropped and a statement ends with a
/// line that ends in `;`. (Our DDL has no semicolons inside strings; tests keep it so.)
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            out.push(stmt);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing_and_named_after_their_file() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in MIGRATIONS {
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{}", m.name);
        }
    }

    #[test]
    fn every_statement_is_idempotent_and_single() {
        for m in MIGRATIONS {
            let stmts = m.statements();
            assert!(!stmts.is_empty(), "{} has no statements", m.name);
            for s in stmts {
                let guarded = added_column(&s).is_some();
                assert!(s.contains("IF NOT EXISTS") || guarded, "{}: not idempotent: {s}", m.name);
                assert!(!s.contains(';'), "{}: semicolon inside a statement: {s}", m.name);
            }
        }
    }

    #[test]
    fn splitter_drops_comments_and_splits_on_line_ends() {
        let sql = "-- c\nCREATE TABLE IF NOT EXISTS a (x UInt8)\nENGINE = Memory;\n\n-- d\nSELECT 1;\n";
        assert_eq!(statements(sql), vec!["CREATE TABLE IF NOT EXISTS a (x UInt8)\nENGINE = Memory", "SELECT 1"]);
        assert_eq!(MIGRATIONS[1].statements().len(), 2);
    }

    #[test]
    fn added_columns_are_recognised() {
        assert_eq!(
            added_column("ALTER TABLE positions ADD COLUMN moving UInt8 DEFAULT 0"),
            Some(("positions", "moving"))
        );
        assert_eq!(added_column("alter table t add column c String"), Some(("t", "c")));
        assert_eq!(added_column("ALTER TABLE t DROP COLUMN c"), None);
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory"), None);
        assert_eq!(added_column("ALTER TABLE t"), None);
    }

    #[test]
    fn checksum_changes_with_text() {
        assert_eq!(checksum("abc"), checksum("abc"));
        assert_ne!(checksum("abc"), checksum("abd"));
        assert_eq!(checksum(""), 0xcbf2_9ce4_8422_2325);
    }
}
