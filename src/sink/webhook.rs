//! The generic webhook sink: each alert transition POSTed as JSON (the
//! [`Alert`] serialization, as on the Kafka alerts topic). With a secret, the
//! body is signed: `X-Peakguard-Signature: sha256=<hex HMAC-SHA256 of the
//! body>`, so the receiver can check it came from peakguard.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::warn;

use super::http_post::JsonPost;
use crate::rules::Alert;

/// Header carrying the body's HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-peakguard-signature";

pub struct WebhookSink {
    post: JsonPost,
    secret: Option<Vec<u8>>,
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
        let post = JsonPost::new(url.to_string(), timeout, attempts, "webhook")?;
        let secret = (!secret.is_empty()).then(|| secret.as_bytes().to_vec());
        Ok(WebhookSink { post, secret })
    }

    /// Delivers one alert (see [`JsonPost::send`] for retries). Returns false
    /// if it did not get through.
    pub async fn deliver(&self, alert: &Alert) -> bool {
        let body = match serde_json::to_vec(alert) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot serialize alert");
                return false;
            }
        };
        let headers: Vec<(&str, String)> =
            self.secret.iter().map(|secret| (SIGNATURE_HEADER, signature(secret, &body))).collect();
        self.post.send(&body, &headers).await
    }
}
