//! The Alertmanager sink: alerts POSTed to Alertmanager's v2 API
//! (`POST /api/v2/alerts`) in its own format, and every firing alert re-sent
//! each `resend_interval` (Alertmanager's client contract: an alert not
//! re-sent within its resolve timeout is considered resolved). Resolved
//! alerts go once with `endsAt`. Alertmanager deduplicates by label set, so a
//! re-send or a replay never creates a second alert.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use tracing::warn;

use crate::rules::{Alert, AlertStatus};

pub struct AlertmanagerSink {
    client: reqwest::Client,
    url: String,
    /// Firing alerts by fingerprint, in Alertmanager's format, for re-sending.
    firing: Mutex<HashMap<String, Value>>,
    attempts: u32,
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// One alert in Alertmanager's v2 format.
pub fn to_alertmanager(a: &Alert) -> Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
    });
    if let Some(end) = a.ends_at {
        v["endsAt"] = json!(rfc3339(end));
    }
    v
}

impl AlertmanagerSink {
    /// `base_url` like `http://127.0.0.1:9093`.
    pub fn new(base_url: &str, timeout: Duration, attempts: u32) -> Result<AlertmanagerSink, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let url = format!("{}/api/v2/alerts", base_url.trim_end_matches('/'));
        Ok(AlertmanagerSink { client, url, firing: Mutex::new(HashMap::new()), attempts: attempts.max(1) })
    }

    async fn post(&self, alerts: &[Value]) -> bool {
        let body = match serde_json::to_vec(alerts) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot serialize alerts");
                return false;
            }
        };
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=self.attempts {
            let req = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return true,
                Ok(resp) if resp.status().is_client_error() => {
                    warn!(status = %resp.status(), url = %self.url, "Alertmanager refused the alerts; not retrying");
                    return false;
                }
                Ok(resp) => warn!(status = %resp.status(), attempt, url = %self.url, "Alertmanager delivery failed"),
                Err(e) => warn!(error = %e, attempt, url = %self.url, "Alertmanager delivery failed"),
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        false
    }

    /// Sends one transition and remembers firing alerts for re-sending.
    pub async fn deliver(&self, alert: &Alert) -> bool {
        let v = to_alertmanager(alert);
        if let Ok(mut f) = self.firing.lock() {
            match alert.status {
                AlertStatus::Firing => f.insert(alert.fingerprint.clone(), v.clone()),
                AlertStatus::Resolved => f.remove(&alert.fingerprint),
            };
        }
        self.post(&[v]).await
    }

    /// Re-sends every firing alert (called each resend interval).
    pub async fn resend(&self) -> bool {
        let all: Vec<Value> = self.firing.lock().map(|f| f.values().cloned().collect()).unwrap_or_default();
        all.is_empty() || self.post(&all).await
    }
}
