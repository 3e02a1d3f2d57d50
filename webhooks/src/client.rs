//! The deliveries' HTTP client, built as storage builds its ClickHouse client (hyper, rustls with
//! ring, the web's root certificates), with what webhooks need besides: names resolved through
//! [`target::resolve`] (public addresses only unless allowed), no redirects followed (a 3xx
//! could point anywhere and is a failed attempt), and every attempt bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::target::{self, Refused};

pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
    timeout: Duration,
}

/// Why an attempt failed before any answer came.
pub struct SendError {
    pub message: String,
    /// Refused for where it would go: retrying cannot help.
    pub refused: bool,
}

impl HttpClient {
    pub fn new(allow_private_networks: bool, timeout: Duration) -> anyhow::Result<HttpClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS set-up")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(Resolver { allow_private_networks });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient { client: Client::builder(TokioExecutor::new()).build(connector), timeout })
    }

    /// POSTs `body` with `headers`; the answer's status.
    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<http::StatusCode, SendError> {
        let mut request =
            http::Request::post(url).header("user-agent", concat!("fleetstream/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(|e| SendError { message: e.to_string(), refused: true })?;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response.status()),
            Ok(Err(e)) => Err(match refusal_in(&e) {
                Some(refused) => SendError { message: refused, refused: true },
                None => SendError { message: error_chain(&e), refused: false },
            }),
            Err(_) => {
                Err(SendError { message: format!("no answer within {} s", self.timeout.as_secs()), refused: false })
            }
        }
    }
}

/// The resolver's [`Refused`], if that is what failed the request.
fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(error);
    while let Some(e) = source {
        // An io::Error hides the error it wraps from `source()`: ask it directly.
        let inner = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if let Some(refused) = inner.and_then(|i| i.downcast_ref::<Refused>()).or_else(|| e.downcast_ref::<Refused>()) {
            return Some(refused.to_string());
        }
        source = e.source();
    }
    None
}

/// An error and its causes, which is where hyper says what actually failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Name resolution through [`target::resolve`].
#[derive(Debug, Clone, Copy)]
struct Resolver {
    allow_private_networks: bool,
}

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (host, allow) = (name.as_str().to_string(), self.allow_private_networks);
        Box::pin(async move { Ok(target::resolve(&host, allow).await?.into_iter()) })
    }
}
