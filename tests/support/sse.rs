//! A Server-Sent Events client for the stream tests: reads `/v1/stream/*` as a browser would,
//! message by message, at the pace the test asks.

use std::time::Duration;

use serde_json::Value;

/// One SSE message received.
#[derive(Debug, Clone)]
pub struct Msg {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

impl Msg {
    /// A position's or event's own id (`event_id` of the output contract).
    pub fn key(&self) -> String {
        self.data["event_id"].as_str().unwrap_or_default().to_string()
    }
    pub fn device(&self) -> &str {
        self.data["device_id"].as_str().unwrap_or_default()
    }
}

/// A stream client that reads as it is asked to.
pub struct Sse {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    pub async fn open(client: &reqwest::Client, url: &str, last_id: Option<&str>) -> Sse {
        let mut request = client.get(url);
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}: {:?}", response.text().await);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse { response, buf: Vec::new() }
    }

    /// The next message (comments and `retry:` skipped), or `None` when nothing came within
    /// `within` or the stream ended.
    pub async fn next(&mut self, within: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..end + 2).collect()).unwrap();
                let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_string());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data.join("\n")).expect("data is JSON");
                return Some(Msg { event, id, data });
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Messages until `done` holds of them, failing after `within`.
    pub async fn until(&mut self, within: Duration, what: &str, done: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) => got.push(m),
                None => panic!("{what}: only {} messages after {within:?}", got.len()),
            }
        }
        got
    }

    /// Whatever comes within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Msg> {
        let mut got = Vec::new();
        while let Some(m) = self.next(within).await {
            got.push(m);
        }
        got
    }
}
