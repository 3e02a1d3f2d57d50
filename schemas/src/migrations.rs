//! The ClickHouse DDL as ordered migrations, compiled into the binary.
//!
//! Rules: a migration that has been released is never edited (the ledger stores a checksum and
//! startup refuses a mismatch); every statement is idempotent (`IF NOT EXISTS`); and every
//! statement runs on both ClickHouse 18.16 and current ClickHouse. On a cluster the runner applies
//! each statement's [`cluster`] variant instead.

pub mod cluster;

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
    Migration { version: 6, name: "0006_versioned_rows", sql: include_str!("../migrations/0006_versioned_rows.sql") },
    Migration { version: 7, name: "0007_webhooks", sql: include_str!("../migrations/0007_webhooks.sql") },
    Migration { version: 8, name: "0008_alerts", sql: include_str!("../migrations/0008_alerts.sql") },
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

/// The comment that makes the next statement conditional: `-- only if <table> lacks <column>`.
const GUARD_PREFIX: &str = "-- only if ";

/// One statement of a migration, and the condition it runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// `(table, column)`: run only while `table` has no column `column` — for steps that are not
    /// idempotent by themselves (ADD COLUMN, copying rows, RENAME), so that a migration that
    /// stopped part-way resumes where it stopped.
    pub only_if_missing: Option<(String, String)>,
}

impl Migration {
    /// FNV-1a over the file's text: detects an edited migration without a crypto dependency.
    pub fn checksum(&self) -> u64 {
        checksum(self.sql)
    }

    /// The statements of this migration, one per request, with their conditions.
    pub fn statements(&self) -> Vec<Statement> {
        statements(self.sql)
            .into_iter()
            .map(|(guard, sql)| {
                let only_if_missing = guard.or_else(|| added_column(&sql).map(|(t, c)| (t.into(), c.into())));
                Statement { sql, only_if_missing }
            })
            .collect()
    }
}

/// FNV-1a, 64 bit.
pub fn checksum(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Splits a file into statements: `--` comment lines are dropped and a statement ends with a
/// line that ends in `;`. (Our DDL has no semicolons inside strings; tests keep it so.) A
/// `-- only if <table> lacks <column>` comment is returned with the statement after it.
pub fn statements(sql: &str) -> Vec<(Option<(String, String)>, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut guard = None;
    for line in sql.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix(GUARD_PREFIX) {
            guard = parse_guard(rest);
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            out.push((guard.take(), stmt));
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push((guard.take(), current.trim().to_string()));
    }
    out
}

/// `<table> lacks <column>`.
fn parse_guard(text: &str) -> Option<(String, String)> {
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        [table, "lacks", column] => Some((table.to_string(), column.to_string())),
        _ => None,
    }
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
                let idempotent = s.sql.contains("IF NOT EXISTS") || s.sql.contains("IF EXISTS");
                assert!(idempotent || s.only_if_missing.is_some(), "{}: not idempotent: {}", m.name, s.sql);
                assert!(!s.sql.contains(';'), "{}: semicolon inside a statement: {}", m.name, s.sql);
            }
        }
    }

    #[test]
    fn every_guard_comment_is_well_formed() {
        for m in MIGRATIONS {
            for line in m.sql.lines().filter(|l| l.trim().starts_with(GUARD_PREFIX)) {
                assert!(parse_guard(line.trim().strip_prefix(GUARD_PREFIX).unwrap()).is_some(), "{}: {line}", m.name);
            }
        }
    }

    #[test]
    fn splitter_drops_comments_and_splits_on_line_ends() {
        let sql = "-- c\nCREATE TABLE IF NOT EXISTS a (x UInt8)\nENGINE = Memory;\n\n-- d\nSELECT 1;\n";
        let plain: Vec<String> = statements(sql).into_iter().map(|(_, s)| s).collect();
        assert_eq!(plain, vec!["CREATE TABLE IF NOT EXISTS a (x UInt8)\nENGINE = Memory", "SELECT 1"]);
        assert_eq!(MIGRATIONS[1].statements().len(), 2);
    }

    #[test]
    fn guards_attach_to_the_next_statement_only() {
        let sql = "-- only if t lacks c\n-- why\nINSERT INTO a SELECT 1;\nDROP TABLE IF EXISTS b;\n\
                   ALTER TABLE t ADD COLUMN d UInt8;\n";
        let m = Migration { version: 99, name: "0099_x", sql };
        let guards: Vec<Option<(String, String)>> = m.statements().into_iter().map(|s| s.only_if_missing).collect();
        let g = |t: &str, c: &str| Some((t.to_string(), c.to_string()));
        assert_eq!(guards, vec![g("t", "c"), None, g("t", "d")]);
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
