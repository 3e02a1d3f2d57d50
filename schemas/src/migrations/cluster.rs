//! The cluster variant of a migration statement, derived from the single-server text so that no
//! migration is written twice.
//!
//! On a ClickHouse cluster (`--clickhouse-cluster NAME`) every table `t` of the single-server
//! schema becomes two:
//! - `t_local` ([`local_name`]) on every server, created `ON CLUSTER` with the `Replicated`
//!   variant of its engine (same columns, `ORDER BY`, `PARTITION BY` and version column), its
//!   ZooKeeper path made of the `{shard}` macro, the database and the table;
//! - `t`, a `Distributed` table over the `t_local` tables. The migration runner creates it, and
//!   re-creates it whenever its local table changed (storage's `migrate::cluster`), so every
//!   query and insert of the rest of the code keeps using the names it always used.
//!
//! The rewrite, statement by statement:
//! - `CREATE TABLE t (...) ENGINE = XMergeTree(args) ...` creates `t_local` `ON CLUSTER` with
//!   `ReplicatedXMergeTree('<path>', '{replica}', args)`;
//! - `CREATE MATERIALIZED VIEW v TO t AS SELECT ... FROM s` attaches `v` to `s_local` and writes
//!   to `t_local` on every server: both tables are sharded alike (by device), so each shard
//!   feeds its own part of `t`;
//! - `ALTER TABLE t ...` and `RENAME TABLE a TO b, ...` act on the local tables `ON CLUSTER`;
//! - `DROP TABLE IF EXISTS t` drops `t` and `t_local` `ON CLUSTER`;
//! - `INSERT ... SELECT` stays as it is: it reads and writes through the `Distributed` tables
//!   (synchronously: the runner's client sets `insert_distributed_sync`), and the rows go back to
//!   the shard they came from, because the sharding key does not change.
//!
//! Table names are qualified with the database: ClickHouse 18.16 runs `ON CLUSTER` DDL on the
//! other servers without the initiator's current database for `AS`, `TO` and `FROM`. A guard
//! `-- only if t lacks c` checks `t_local`. Anything else is refused with a message, so that a new
//! kind of statement is noticed by the unit test below before it is released.

use super::Statement;

/// The suffix of the per-server table behind a `Distributed` table.
pub const LOCAL_SUFFIX: &str = "_local";

/// The per-server table behind the `Distributed` table `table`.
pub fn local_name(table: &str) -> String {
    format!("{table}{LOCAL_SUFFIX}")
}

/// The ZooKeeper path of a replicated local table: one per shard (`{shard}` macro), database and
/// table, the layout ClickHouse's documentation uses.
pub fn replica_path(database: &str, local_table: &str) -> String {
    format!("/clickhouse/tables/{{shard}}/{database}/{local_table}")
}

/// What one statement of a migration becomes on cluster `cluster`, in database `database` (both
/// already checked to be plain identifiers).
pub fn on_cluster(statement: &Statement, cluster: &str, database: &str) -> Result<Vec<Statement>, String> {
    let sql = statement.sql.trim();
    let guard = statement.only_if_missing.as_ref().map(|(table, column)| (local_name(table), column.clone()));
    let one = |sql: String| Statement { sql, only_if_missing: guard.clone() };
    let on = format!("ON CLUSTER {cluster}");
    let local = |table: &str| format!("{database}.{}", local_name(table));
    if let Some(rest) = after_words(sql, &["CREATE", "TABLE"]) {
        return create_table(rest, &on, database).map(|sql| vec![one(sql)]);
    }
    if let Some(rest) = after_words(sql, &["CREATE", "MATERIALIZED", "VIEW"]) {
        return materialized_view(rest, &on, database).map(|sql| vec![one(sql)]);
    }
    if let Some(rest) = after_words(sql, &["ALTER", "TABLE"]) {
        let (table, rest) = identifier(rest).ok_or("ALTER TABLE without a table name")?;
        return Ok(vec![one(format!("ALTER TABLE {} {on} {}", local(table), rest.trim_start()))]);
    }
    if let Some(rest) = after_words(sql, &["RENAME", "TABLE"]) {
        let mut pairs = Vec::new();
        for pair in rest.split(',') {
            match pair.split_whitespace().collect::<Vec<_>>()[..] {
                [from, to_word, to] if to_word.eq_ignore_ascii_case("TO") => {
                    pairs.push(format!("{} TO {}", local(from), local(to)))
                }
                _ => return Err(format!("RENAME TABLE: cannot read {pair:?} as `a TO b`")),
            }
        }
        return Ok(vec![one(format!("RENAME TABLE {} {on}", pairs.join(", ")))]);
    }
    if let Some(rest) = after_words(sql, &["DROP", "TABLE", "IF", "EXISTS"]) {
        let (table, rest) = identifier(rest).ok_or("DROP TABLE without a table name")?;
        if !rest.trim().is_empty() {
            return Err(format!("DROP TABLE {table}: unexpected {rest:?}"));
        }
        // The Distributed table first: it must never point at a dropped local table.
        let drops = [format!("{database}.{table}"), local(table)];
        return Ok(drops.iter().map(|t| one(format!("DROP TABLE IF EXISTS {t} {on}"))).collect());
    }
    if after_words(sql, &["INSERT", "INTO"]).is_some() {
        return Ok(vec![one(sql.to_string())]);
    }
    Err(format!("no cluster variant for this statement (see schemas/src/migrations/cluster.rs): {sql}"))
}

/// `[IF NOT EXISTS] t (...) ENGINE = XMergeTree(args) ...` -> the replicated local table.
fn create_table(rest: &str, on: &str, database: &str) -> Result<String, String> {
    let (if_not_exists, rest) = match after_words(rest, &["IF", "NOT", "EXISTS"]) {
        Some(rest) => ("IF NOT EXISTS ", rest),
        None => ("", rest),
    };
    let (table, rest) = identifier(rest).ok_or("CREATE TABLE without a table name")?;
    let local = local_name(table);
    let path = replica_path(database, &local);
    let engine_at = find_word(rest, "ENGINE").ok_or_else(|| format!("CREATE TABLE {table}: no ENGINE"))?;
    let (columns, engine) = rest.split_at(engine_at);
    let engine = engine["ENGINE".len()..].trim_start();
    let engine = engine.strip_prefix('=').ok_or_else(|| format!("CREATE TABLE {table}: no `=` after ENGINE"))?;
    let (name, after_name) = identifier(engine).ok_or_else(|| format!("CREATE TABLE {table}: no engine name"))?;
    if !name.ends_with("MergeTree") || name.starts_with("Replicated") {
        return Err(format!("CREATE TABLE {table}: engine {name} has no replicated variant here (a *MergeTree is)"));
    }
    let args_and_rest =
        after_name.strip_prefix('(').ok_or_else(|| format!("CREATE TABLE {table}: engine {name} without `(`"))?;
    let close = args_and_rest.find(')').ok_or_else(|| format!("CREATE TABLE {table}: engine {name} without `)`"))?;
    let (args, tail) = (args_and_rest[..close].trim(), &args_and_rest[close + 1..]);
    let args = if args.is_empty() { String::new() } else { format!(", {args}") };
    Ok(format!(
        "CREATE TABLE {if_not_exists}{database}.{local} {on} {}ENGINE = Replicated{name}('{path}', '{{replica}}'{args}){tail}",
        columns.trim_start()
    ))
}

/// `[IF NOT EXISTS] v TO t AS SELECT ... FROM s` -> the same view over the local tables.
fn materialized_view(rest: &str, on: &str, database: &str) -> Result<String, String> {
    let (if_not_exists, rest) = match after_words(rest, &["IF", "NOT", "EXISTS"]) {
        Some(rest) => ("IF NOT EXISTS ", rest),
        None => ("", rest),
    };
    let (view, rest) = identifier(rest).ok_or("CREATE MATERIALIZED VIEW without a name")?;
    let rest = after_words(rest, &["TO"]).ok_or_else(|| format!("materialized view {view}: only `TO table` views"))?;
    let (target, select) = identifier(rest).ok_or_else(|| format!("materialized view {view}: no target table"))?;
    let from = find_word(select, "FROM").ok_or_else(|| format!("materialized view {view}: no FROM"))?;
    let (head, source) = select.split_at(from + "FROM".len());
    let (source, tail) = identifier(source).ok_or_else(|| format!("materialized view {view}: no source table"))?;
    if find_word(tail, "FROM").is_some() || find_word(tail, "JOIN").is_some() {
        return Err(format!("materialized view {view}: only views over one table have a cluster variant"));
    }
    Ok(format!(
        "CREATE MATERIALIZED VIEW {if_not_exists}{database}.{view} {on} TO {database}.{} {} {database}.{}{tail}",
        local_name(target),
        head.trim(),
        local_name(source)
    ))
}

/// The text after the keywords `words` (case-insensitive, separated by whitespace), if `sql`
/// starts with them.
fn after_words<'a>(sql: &'a str, words: &[&str]) -> Option<&'a str> {
    let mut rest = sql;
    for word in words {
        rest = rest.trim_start();
        let head = rest.get(..word.len())?;
        let boundary = rest[word.len()..].chars().next().is_none_or(|c| !is_identifier_char(c));
        if !head.eq_ignore_ascii_case(word) || !boundary {
            return None;
        }
        rest = &rest[word.len()..];
    }
    Some(rest)
}

/// The identifier at the start of `text` (after whitespace) and the text after it.
fn identifier(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text.find(|c: char| !is_identifier_char(c)).unwrap_or(text.len());
    (end > 0).then(|| text.split_at(end))
}

/// Where the keyword `word` stands on its own in `text` (case-insensitive).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let upper = text.to_ascii_uppercase();
    let mut from = 0;
    while let Some(at) = upper[from..].find(word).map(|i| i + from) {
        let before = upper[..at].chars().next_back().is_none_or(|c| !is_identifier_char(c));
        let after = upper[at + word.len()..].chars().next().is_none_or(|c| !is_identifier_char(c));
        if before && after {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{LEDGER_DDL, MIGRATIONS, statements};

    fn rewrite(sql: &str) -> Vec<String> {
        let statement = Statement { sql: sql.into(), only_if_missing: None };
        on_cluster(&statement, "fleet", "db").unwrap().into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn every_released_statement_has_a_cluster_variant() {
        let ledger = statements(LEDGER_DDL).into_iter().map(|(_, sql)| Statement { sql, only_if_missing: None });
        let all = MIGRATIONS.iter().flat_map(|m| m.statements()).chain(ledger);
        for statement in all {
            let variant = on_cluster(&statement, "fleet", "db").unwrap_or_else(|e| panic!("{e}"));
            for s in variant {
                let is_insert = s.sql.starts_with("INSERT");
                assert!(is_insert || s.sql.contains(" ON CLUSTER fleet"), "{}", s.sql);
                assert!(!s.sql.contains("ENGINE = ReplacingMergeTree"), "{}", s.sql);
            }
        }
    }

    #[test]
    fn tables_become_replicated_local_tables_with_the_same_keys_and_versions() {
        let sql = "CREATE TABLE IF NOT EXISTS device_latest (\n    device_id String,\n    fix_time_ms Int64\n) \
                   ENGINE = ReplacingMergeTree(fix_time_ms)\nORDER BY device_id";
        assert_eq!(
            rewrite(sql),
            vec![
                "CREATE TABLE IF NOT EXISTS db.device_latest_local ON CLUSTER fleet (\n    device_id String,\n    \
                 fix_time_ms Int64\n) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/\
                 device_latest_local', '{replica}', fix_time_ms)\nORDER BY device_id"
            ]
        );
        let plain = rewrite("CREATE TABLE s (t Int64) ENGINE = MergeTree() PARTITION BY t ORDER BY t");
        assert_eq!(
            plain,
            vec![
                "CREATE TABLE db.s_local ON CLUSTER fleet (t Int64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/\
                 {shard}/db/s_local', '{replica}') PARTITION BY t ORDER BY t"
            ]
        );
    }

    #[test]
    fn views_alters_renames_and_drops_act_on_local_tables() {
        assert_eq!(
            rewrite("CREATE MATERIALIZED VIEW IF NOT EXISTS v TO l AS\nSELECT a, b\nFROM p"),
            vec![
                "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v ON CLUSTER fleet TO db.l_local AS\nSELECT a, b\nFROM db.p_local"
            ]
        );
        assert_eq!(
            rewrite("ALTER TABLE positions ADD COLUMN moving UInt8 DEFAULT 0"),
            vec!["ALTER TABLE db.positions_local ON CLUSTER fleet ADD COLUMN moving UInt8 DEFAULT 0"]
        );
        assert_eq!(
            rewrite("RENAME TABLE positions TO positions_old, positions_new TO positions"),
            vec![
                "RENAME TABLE db.positions_local TO db.positions_old_local, db.positions_new_local TO db.positions_local \
                 ON CLUSTER fleet"
            ]
        );
        assert_eq!(
            rewrite("DROP TABLE IF EXISTS old"),
            vec!["DROP TABLE IF EXISTS db.old ON CLUSTER fleet", "DROP TABLE IF EXISTS db.old_local ON CLUSTER fleet"]
        );
        let insert = "INSERT INTO a (x) SELECT x FROM b";
        assert_eq!(rewrite(insert), vec![insert]);
    }

    #[test]
    fn guards_check_the_local_table() {
        let statement = Statement {
            sql: "ALTER TABLE positions ADD COLUMN late UInt8".into(),
            only_if_missing: Some(("positions".into(), "late".into())),
        };
        let variant = on_cluster(&statement, "c", "db").unwrap();
        assert_eq!(variant[0].only_if_missing, Some(("positions_local".into(), "late".into())));
    }

    #[test]
    fn what_has_no_cluster_variant_is_refused() {
        for sql in [
            "CREATE TABLE t (x UInt8) ENGINE = Memory",
            "CREATE TABLE t (x UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY x",
            "DROP TABLE t",
            "CREATE MATERIALIZED VIEW v TO t AS SELECT x FROM a JOIN b USING x",
            "CREATE MATERIALIZED VIEW v ENGINE = Memory AS SELECT x FROM a",
            "OPTIMIZE TABLE t FINAL",
        ] {
            let statement = Statement { sql: sql.into(), only_if_missing: None };
            assert!(on_cluster(&statement, "c", "db").is_err(), "{sql}");
        }
    }
}
