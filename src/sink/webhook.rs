//! The generic webhook sink: each alert transition POSTed as JSON (the
//! [`Alert`] serialization, as on the Kafka alerts topic). With a secret, the
//! body is signed: `X-Peakguard-Signature: sha256=<hex HMAC-SHA256 of the
//! body>`, so the receiver can check it came from peakguard.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::warn;

use crate::rules::Alert;

/// Header carrying the body's HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-peakguard-signature";

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    secret: Option<Vec<u8>>,
    attempts: u32,
}

/// `sha256=<hex>` HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookSink {
    /// `secret` empty: unsigned. `attempts`: deliveries tried before giving up.
    pub fn new(url: &str, secret: &str, timeout: Duration, attempts: u32) -> Result<WebhookSink, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let secret = (!secret.is_empty()).then(|| secret.as_bytes().to_vec());
        Ok(WebhookSink { client, url: url.to_string(), secret, attempts: attempts.max(1) })
    }

    /// Delivers one alert, retrying server errors and timeouts with backoff;
    /// a 4xx other than 429 is not retried. Returns false if it did not get through.
    pub async fn deliver(&self, alert: &Alert) -> bool {
        let body = match serde_json::to_vec(alert) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot serialize alert");
                return false;
            }
        };
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=self.attempts {
            let mut req = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(secret) = &self.secret {
                req = req.header(SIGNATURE_HEADER, signature(secret, &body));
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return true,
                Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                    warn!(status = %resp.status(), url = %self.url, fingerprint = %alert.fingerprint, "webhook refused the alert; not retrying");
                    return false;
                }
                Ok(resp) => warn!(status = %resp.status(), attempt, url = %self.url, "webhook delivery failed"),
                Err(e) => warn!(error = %e, attempt, url = %self.url, "webhook delivery failed"),
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        false
    }
}
