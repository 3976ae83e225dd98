//! The alert notification: what a rule transition produces and what every
//! sink receives. Its JSON form is the documented payload of the Kafka alerts
//! topic (see README.md, "Alert payload").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Page,
    Ticket,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
            Severity::Info => "info",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// A rule's state change for one shop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id of (rule, scope, key): the same incident always has the same one.
    pub fingerprint: String,
    pub status: AlertStatus,
    pub rule: String,
    pub severity: Severity,
    /// `shop`, `category` or `platform`.
    pub scope: String,
    /// The shop, for shop-scope rules; empty otherwise.
    pub shop_id: String,
    pub category: String,
    pub metric: String,
    pub window: String,
    /// The rate's numerator in the window (e.g. refunds requested).
    pub numerator: u64,
    /// The rate's denominator in the window (e.g. orders paid).
    pub denominator: u64,
    pub rate: f64,
    pub wilson_lower_bound: f64,
    /// What the bound was compared with: the rule's threshold (or its
    /// campaign phase's), or for a spike rule the largest of the floor,
    /// the baseline comparison and the category comparison.
    pub threshold: f64,
    /// Spike rules: the shop's own baseline rate, when it had the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_rate: Option<f64>,
    /// Spike rules: the rate of the rest of the shop's category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_rate: Option<f64>,
    /// The campaign phase the window end fell in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Already notified before a restart (found firing on the alerts topic):
    /// sent again so Alertmanager keeps it, but the webhook does not page again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    /// Event time (UTC ms) of the window end at which the alert started firing.
    pub starts_at: Millis,
    /// Event time of the window end at which it resolved.
    pub ends_at: Option<Millis>,
    /// Event time of the window end these numbers describe.
    pub window_end: Millis,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Alert {
    /// What the alert is about: the shop id, the category, or "platform".
    pub fn target(&self) -> &str {
        match self.scope.as_str() {
            "shop" => &self.shop_id,
            "category" => &self.category,
            _ => "platform",
        }
    }
}

/// Fingerprint of (rule, scope, key): first 16 hex digits of SHA-256 over the
/// NUL-separated parts. Stable across restarts, hosts and versions.
pub fn fingerprint(rule: &str, scope: &str, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [rule, scope, key] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_distinct() {
        assert_eq!(fingerprint("r", "shop", "a"), fingerprint("r", "shop", "a"));
        assert_ne!(fingerprint("r", "shop", "a"), fingerprint("r", "shop", "b"));
        // Separators matter: ("ab","c") and ("a","bc") differ.
        assert_ne!(fingerprint("ab", "c", "x"), fingerprint("a", "bc", "x"));
        assert_eq!(fingerprint("r", "shop", "a").len(), 16);
    }
}
