//! A ClickHouse server over HTTP, through the official `clickhouse` crate.

use clickhouse::Client;
use clickhouse::query::Query;

use super::{Arg, EngineError, ReadRow, WriteRow};
use crate::config::ClickHouseConfig;

#[derive(Clone)]
pub(crate) struct Http {
    client: Client,
}

impl Http {
    pub fn new(config: &ClickHouseConfig, database: &str) -> Http {
        let client = Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(&config.password)
            .with_database(database)
            // ClickHouse 18.16 has no RowBinaryWithNamesAndTypes; migrate::check_shapes stands in.
            .with_validation(false);
        Http { client }
    }

    /// `?` values are escaped client-side by the crate (18.16 has no server-side parameters).
    fn query(&self, sql: &str, args: Vec<Arg>) -> Query {
        args.into_iter().fold(self.client.query(sql), |query, arg| match arg {
            Arg::Str(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
            Arg::UInt(v) => query.bind(v),
            Arg::Float(v) => query.bind(v),
            Arg::Strs(v) => query.bind(v),
        })
    }

    pub async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<(), EngineError> {
        Ok(self.query(sql, args).execute().await?)
    }

    pub async fn fetch_all<T: ReadRow>(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<T>, EngineError> {
        Ok(self.query(sql, args).fetch_all::<T>().await?)
    }

    pub async fn insert<T: WriteRow>(&self, table: &str, rows: &[T]) -> Result<(), EngineError> {
        let mut insert = self.client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        Ok(insert.end().await?)
    }
}
