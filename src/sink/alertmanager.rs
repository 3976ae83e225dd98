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

use super::http_post::JsonPost;
use crate::rules::{Alert, AlertStatus};

pub struct AlertmanagerSink {
    post: JsonPost,
    /// Firing alerts by fingerprint, in Alertmanager's format, for re-sending.
    firing: Mutex<HashMap<String, Value>>,
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
        let url = format!("{}/api/v2/alerts", base_url.trim_end_matches('/'));
        Ok(AlertmanagerSink { post: JsonPost::new(url, timeout, attempts, "alertmanager")?, firing: Mutex::default() })
    }

    async fn post(&self, alerts: &[Value]) -> bool {
        match serde_json::to_vec(alerts) {
            Ok(body) => self.post.send(&body, &[]).await,
            Err(e) => {
                warn!(error = %e, url = %self.post.url(), "cannot serialize alerts");
                false
            }
        }
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
