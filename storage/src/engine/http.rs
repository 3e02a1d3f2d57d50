//! A ClickHouse server over HTTP or HTTPS, through the official `clickhouse` crate with a hyper
//! client of our own: rustls (ring) checks the server's certificate against the CA file given,
//! else against Mozilla's list of public CAs built in; setting up a connection (TCP connect and
//! TLS handshake) is bounded by `--clickhouse-connect-timeout-ms`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clickhouse::Client;
use clickhouse::query::Query;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{Arg, EngineError, ReadRow, WriteRow};
use crate::config::ClickHouseConfig;
use crate::error::StoreError;

/// As the `clickhouse` crate's own client: TCP keep-alive, and idle connections dropped before
/// the server's keep-alive timeout (3 s on older servers) closes them under us.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(crate) struct Http {
    client: Client,
}

impl Http {
    /// A client of `config`'s server on `database`. Fails only on a CA file that cannot be read
    /// or holds no certificate.
    pub fn new(config: &ClickHouseConfig, database: &str) -> Result<Http, StoreError> {
        let mut client = client(config)?
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(&config.password)
            .with_database(database)
            // ClickHouse 18.16 has no RowBinaryWithNamesAndTypes; migrate::check_shapes stands in.
            .with_validation(false);
        if config.cluster.is_some() {
            // An insert into a Distributed table returns only once every shard has its rows
            // (else they wait in the server's queue): the processors commit offsets after it.
            client = client.with_setting("insert_distributed_sync", "1");
        }
        Ok(Http { client })
    }

    /// The same server and credentials, on another database.
    pub fn with_database(&self, database: &str) -> Http {
        Http { client: self.client.clone().with_database(database) }
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

/// A `clickhouse` client over a hyper client of ours: plain HTTP for `http://`, TLS 1.2/1.3 for
/// `https://` with the server's certificate and host name checked.
fn client(config: &ClickHouseConfig) -> Result<Client, StoreError> {
    let roots = match &config.ca_file {
        Some(path) => roots_from_file(path)?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let connector = Bounded {
        inner: connector,
        timeout: Duration::from_millis(config.connect_timeout_ms),
        server: Arc::from(crate::config::redact_url(&config.url)),
    };
    Ok(Client::with_http_client(
        HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).build(connector),
    ))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector whose connections must be ready within `timeout`: hyper bounds neither the TCP
/// connect nor the TLS handshake, so a server that accepts TCP and then says nothing would hold
/// the request, and the processor or API waiting on it, forever. A connection not ready in time
/// fails as a network error, which callers retry like any other.
#[derive(Clone)]
struct Bounded<C> {
    inner: C,
    timeout: Duration,
    /// The server, for the error (its URL, redacted).
    server: Arc<str>,
}

impl<C, R> tower::Service<R> for Bounded<C>
where
    C: tower::Service<R>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let (timeout, server) = (self.timeout, self.server.clone());
        let connecting = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(format!(
                    "no connection to {server} within {} ms: the TCP connect or TLS handshake went \
                     unanswered (--clickhouse-connect-timeout-ms)",
                    timeout.as_millis()
                )
                .into()),
            }
        })
    }
}

/// Every certificate in the PEM file `path` (`--clickhouse-ca-file`).
fn roots_from_file(path: &Path) -> Result<RootCertStore, StoreError> {
    let fail = |reason: String| StoreError::Tls(format!("--clickhouse-ca-file {}: {reason}", path.display()));
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(e.to_string()))?;
    if certificates.is_empty() {
        return Err(fail("no PEM certificate in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::Store;

    /// A server that accepts TCP and never answers: opening the store fails within the connect
    /// timeout (each request tries once; callers retry transient failures), saying why.
    #[tokio::test]
    async fn a_handshake_that_never_completes_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accept and hold every connection, silent: the TLS handshake never gets an answer.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let config = ClickHouseConfig {
            connect_timeout_ms: 500,
            ..ClickHouseConfig::local(&format!("https://127.0.0.1:{port}"), "fleetstream")
        };
        let started = Instant::now();
        let opened = tokio::time::timeout(Duration::from_secs(30), Store::open(&config))
            .await
            .expect("opening the store hung on a handshake that never completes");
        let elapsed = started.elapsed();
        let message = opened.err().expect("no ClickHouse answered").to_string();
        assert!(message.contains("unreachable") && message.contains("within 500 ms"), "{message}");
        assert!(message.contains("TLS handshake"), "{message}");
        assert!(elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}
