//! POSTing JSON with retries: shared by the webhook and Alertmanager sinks.
//! Server errors, 429 and transport errors are retried with exponential
//! backoff (200 ms doubling, at most 10 s); other 4xx answers are final,
//! since sending the same body again cannot fix them.

use std::time::Duration;

use tracing::warn;

/// A JSON POST endpoint with its client and retry budget.
pub struct JsonPost {
    client: reqwest::Client,
    url: String,
    attempts: u32,
    /// For log lines: "webhook", "Alertmanager".
    what: &'static str,
}

impl JsonPost {
    pub fn new(url: String, timeout: Duration, attempts: u32, what: &'static str) -> Result<JsonPost, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(JsonPost { client, url, attempts: attempts.max(1), what })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` with `headers`; true once a 2xx comes back.
    pub async fn send(&self, body: &[u8], headers: &[(&str, String)]) -> bool {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=self.attempts {
            let mut req = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return true,
                Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                    warn!(status = %resp.status(), url = %self.url, sink = self.what, "refused; not retrying");
                    return false;
                }
                Ok(resp) => {
                    warn!(status = %resp.status(), attempt, url = %self.url, sink = self.what, "delivery failed")
                }
                Err(e) => warn!(error = %e, attempt, url = %self.url, sink = self.what, "delivery failed"),
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        false
    }
}
