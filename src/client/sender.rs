//! Posts batches of positions (NDJSON) to the ingest API, retrying what the API asks to be
//! retried: 503 and 429 (after `Retry-After`) and connection failures. A retried batch may be
//! stored twice; the pipeline de-duplicates by device and fix time.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

#[derive(Debug, Clone, Args)]
pub struct SenderConfig {
    /// Base URL of the ingest API.
    #[arg(long = "ingest-url", env = "FLEETSTREAM_INGEST_URL", default_value = "http://127.0.0.1:8081")]
    pub ingest_url: String,
    /// Device or fleet token, when ingest requires one.
    #[arg(long = "token", env = "FLEETSTREAM_DEVICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// What ingest said about one batch.
#[derive(Debug, Default, Deserialize)]
pub struct Report {
    pub accepted: u64,
    pub rejected: u64,
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
}

pub struct Sender {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    /// Attempts that were retried (503, 429, connection errors).
    pub retries: u64,
}

const MAX_ATTEMPTS: u32 = 20;

impl Sender {
    pub fn new(config: &SenderConfig) -> anyhow::Result<Sender> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let url = format!("{}/v1/positions", config.ingest_url.trim_end_matches('/'));
        Ok(Sender { http, url, token: config.token.clone(), retries: 0 })
    }

    /// Sends one NDJSON body until ingest answers it (accepted or rejected item by item).
    pub async fn send(&mut self, ndjson: String) -> anyhow::Result<Report> {
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=MAX_ATTEMPTS {
            let mut request = self.http.post(&self.url).header("content-type", "application/x-ndjson");
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let wait = match request.body(ndjson.clone()).send().await {
                Ok(response) if response.status().is_success() || response.status() == 400 => {
                    return response.json::<Report>().await.context("read ingest's answer");
                }
                Ok(response) if matches!(response.status().as_u16(), 429 | 503) => {
                    let after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    tracing::debug!(status = %response.status(), attempt, "ingest asked to retry");
                    after.unwrap_or(backoff)
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    bail!("ingest refused the batch with {status}: {body}");
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "ingest unreachable");
                    backoff
                }
            };
            self.retries += 1;
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        bail!("ingest at {} did not take a batch after {MAX_ATTEMPTS} attempts", self.url)
    }
}
