//! The rules part of the configuration: `[[rules]]`, `[[phases]]` (the
//! campaign calendar) and rules files, as parsed; validation is in
//! `validate_rules.rs`, resolution into [`crate::rules`] types in `mod.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::rules::{Phase, Scope, Severity};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// `shop` (default), `category` or `platform`.
    #[serde(default)]
    pub scope: Scope,
    /// One of [`Metric::names`], e.g. `refund_rate`.
    pub metric: String,
    pub window: String,
    /// Fires when the Wilson lower bound of the rate is above this (0..1).
    pub threshold: f64,
    /// Volume floor: minimum denominator (e.g. orders paid) in the window.
    #[serde(default = "default_min_orders")]
    pub min_orders: u64,
    /// Volume floor: minimum numerator (e.g. refunds) in the window.
    #[serde(default = "default_min_refunds")]
    pub min_refunds: u64,
    /// One-sided confidence of the Wilson lower bound.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub runbook_url: Option<String>,
    /// The condition must hold this long (event time) before the alert fires.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// A firing alert stays firing this long after the condition clears.
    #[serde(default, with = "humantime_serde")]
    pub keep_firing_for: Duration,
    /// Multi-window rule: a longer window that must breach too before the
    /// alert fires; it resolves when `window` recovers.
    #[serde(default)]
    pub confirm_window: Option<String>,
    /// Threshold of `confirm_window`; default: `threshold`.
    #[serde(default)]
    pub confirm_threshold: Option<f64>,
    /// Spike rule: the shop's own trailing rate in this window (read where
    /// the rule's window starts) times `baseline_ratio` must be exceeded too.
    #[serde(default)]
    pub baseline_window: Option<String>,
    /// Spike rule: read `baseline_window` as it was when this campaign phase
    /// ended (e.g. the pre-sale), instead of just before the current window.
    #[serde(default)]
    pub baseline_phase: Option<String>,
    /// Spike rule: how many times its baseline the rate must be.
    #[serde(default)]
    pub baseline_ratio: Option<f64>,
    /// Spike rule: no page while the shop's baseline is under the volume
    /// floor (new shop, cold start). Default true.
    #[serde(default)]
    pub require_baseline: Option<bool>,
    /// Spike rule: how many times the rest of its category's rate (same
    /// window) the shop's rate must be.
    #[serde(default)]
    pub category_ratio: Option<f64>,
    /// Extra labels of the rule's alerts (e.g. team = "after-sales").
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations of the rule's alerts (e.g. dashboard = "https://...").
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A campaign phase: rules muted or given other thresholds between `start`
/// and `end` (RFC 3339 with offset, e.g. "2026-11-10T20:00:00+08:00").
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    pub name: String,
    pub start: String,
    pub end: String,
    /// Rule names silenced in this phase; "*" for all.
    #[serde(default)]
    pub mute: Vec<String>,
    /// Rule name -> threshold in this phase.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
}

/// A rules file (`rules_file`, `peakguard rules check FILE`): rules and the
/// campaign calendar, nothing else.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesFile {
    pub rules: Vec<RuleConfig>,
    pub phases: Vec<PhaseConfig>,
}

fn default_min_orders() -> u64 {
    30
}
fn default_min_refunds() -> u64 {
    5
}
fn default_confidence() -> f64 {
    0.95
}
fn default_severity() -> Severity {
    Severity::Page
}

impl RuleConfig {
    /// The default rule: refund rate over 5 minutes, bound above 10%.
    pub fn default_refund_rate() -> RuleConfig {
        RuleConfig {
            name: "refund_rate_spike".into(),
            scope: Scope::Shop,
            metric: "refund_rate".into(),
            window: "5m".into(),
            threshold: 0.10,
            min_orders: default_min_orders(),
            min_refunds: default_min_refunds(),
            confidence: default_confidence(),
            severity: Severity::Page,
            runbook_url: None,
            for_: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            confirm_window: None,
            confirm_threshold: None,
            baseline_window: None,
            baseline_phase: None,
            baseline_ratio: None,
            require_baseline: None,
            category_ratio: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    pub fn is_spike(&self) -> bool {
        self.baseline_window.is_some() || self.category_ratio.is_some()
    }
}

/// A spike rule's default: three times its own baseline.
pub const DEFAULT_BASELINE_RATIO: f64 = 3.0;

/// A validated phase, its times in UTC ms.
pub(super) fn phase(p: &PhaseConfig) -> Phase {
    Phase {
        name: p.name.clone(),
        start: parse_time(&p.start).unwrap_or(0),
        end: parse_time(&p.end).unwrap_or(0),
        mute: p.mute.clone(),
        thresholds: p.thresholds.clone(),
    }
}

/// RFC 3339 with an offset ("2026-11-11T00:00:00+08:00") as UTC ms.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}

impl RulesFile {
    pub fn load(path: &Path) -> Result<RulesFile, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { path: path.to_path_buf(), cause })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }
}
