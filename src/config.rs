//! The TOML configuration (`peakguard run --config FILE`), its defaults and
//! its validation. Unknown fields are rejected; every validation error names
//! the field, the value and the fix, and is reported at start, never later.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{EngineConfig, WindowSpec};
use crate::rules::{stats, Metric, RateRule, Severity};

/// A configuration problem, reported at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}` = {value} is invalid: {problem}. Fix: {fix}")]
    Invalid { field: String, value: String, problem: String, fix: String },
}

fn invalid(
    field: impl Into<String>,
    value: impl std::fmt::Debug,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid { field: field.into(), value: format!("{value:?}"), problem: problem.into(), fix: fix.into() }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub schemas: SchemasConfig,
    pub engine: EngineSection,
    pub rules: Vec<RuleConfig>,
    pub http: HttpConfig,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub group_id: String,
    /// Co-partitioned event topics, keyed by shop id.
    pub topics: Vec<String>,
    /// Where alert notifications go as JSON; empty disables the Kafka sink.
    pub alerts_topic: String,
    /// Where undecodable records go with their reason; empty disables it.
    pub dead_letter_topic: String,
    /// Extra librdkafka properties (security.protocol, sasl.*, ssl.*), passed as-is.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: "peakguard".into(),
            topics: ["orders", "shipments", "returns", "refunds", "disputes", "chargebacks"]
                .iter()
                .map(|t| format!("peakguard.{t}"))
                .collect(),
            alerts_topic: "peakguard.alerts".into(),
            dead_letter_topic: "peakguard.dead-letter".into(),
            properties: BTreeMap::new(),
        }
    }
}

/// Property names whose values are secrets and never printed.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.ends_with(".key") || k.contains("token")
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("alerts_topic", &self.alerts_topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("properties", &props)
            .finish()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemasConfig {
    /// Directory with `ids.toml` and the `.avsc` files; the built-in copy of
    /// `schemas/` when absent.
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How often (processing time) the watermark is recomputed and rules run.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Events further ahead of the newest event seen are rejected as `future_event`.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// A repeated event id is dropped while the watermark is within this of
    /// its first copy. Default: `allowed_lateness`.
    #[serde(default, with = "humantime_serde")]
    pub dedup_horizon: Option<Duration>,
    /// At most this many event ids are remembered for dedup (about 20 bytes each).
    pub dedup_capacity: usize,
    pub windows: Vec<WindowConfig>,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            allowed_lateness: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            tick_interval: Duration::from_millis(200),
            max_future: Duration::from_secs(3600),
            dedup_horizon: None,
            dedup_capacity: 1_000_000,
            windows: vec![
                WindowConfig { name: "5m".into(), size: Duration::from_secs(300), step: Duration::from_secs(60) },
                WindowConfig { name: "1h".into(), size: Duration::from_secs(3600), step: Duration::from_secs(300) },
                WindowConfig { name: "24h".into(), size: Duration::from_secs(86_400), step: Duration::from_secs(3600) },
                WindowConfig {
                    name: "30d".into(),
                    size: Duration::from_secs(30 * 86_400),
                    step: Duration::from_secs(86_400),
                },
            ],
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub name: String,
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    #[serde(with = "humantime_serde")]
    pub step: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
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
            metric: "refund_rate".into(),
            window: "5m".into(),
            threshold: 0.10,
            min_orders: default_min_orders(),
            min_refunds: default_min_refunds(),
            confidence: default_confidence(),
            severity: Severity::Page,
            runbook_url: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of /metrics and /healthz; localhost by default.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:9464".into() }
    }
}

/// Librdkafka properties peakguard sets itself.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers"),
    ("group.id", "kafka.group_id"),
    ("enable.auto.offset.store", "nothing: offsets are stored after each event is folded"),
];

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        if cfg.rules.is_empty() {
            cfg.rules.push(RuleConfig::default_refund_rate());
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The defaults, with the default rule.
    pub fn with_defaults() -> Config {
        Config { rules: vec![RuleConfig::default_refund_rate()], ..Config::default() }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return Err(invalid(
                "kafka.brokers",
                &k.brokers,
                "empty",
                "set it to host:port[,host:port], e.g. \"localhost:9092\"",
            ));
        }
        if k.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", &k.group_id, "empty", "set a consumer group id, e.g. \"peakguard\""));
        }
        if k.topics.is_empty() {
            return Err(invalid(
                "kafka.topics",
                &k.topics,
                "no topics",
                "list the event topics, e.g. [\"orders\", \"refunds\"]",
            ));
        }
        let mut seen = HashSet::new();
        for (i, t) in k.topics.iter().enumerate() {
            if t.trim().is_empty() || !seen.insert(t) {
                return Err(invalid(format!("kafka.topics[{i}]"), t, "empty or listed twice", "list each topic once"));
            }
        }
        for key in k.properties.keys() {
            if let Some((_, instead)) = RESERVED_PROPERTIES.iter().find(|(r, _)| r == key) {
                return Err(invalid(
                    format!("kafka.properties.\"{key}\""),
                    key,
                    "set by peakguard itself",
                    format!("use {instead}"),
                ));
            }
        }
        let e = &self.engine;
        if e.windows.is_empty() {
            return Err(invalid(
                "engine.windows",
                "[]",
                "no windows",
                "define at least one [[engine.windows]] with name, size and step",
            ));
        }
        let mut names = HashSet::new();
        for (i, w) in e.windows.iter().enumerate() {
            let field = format!("engine.windows[{i}]");
            if !names.insert(w.name.as_str()) {
                return Err(invalid(
                    format!("{field}.name"),
                    &w.name,
                    "window name used twice",
                    "give each window its own name",
                ));
            }
            if w.step.as_millis() == 0 || w.step.as_millis() % 1000 != 0 {
                return Err(invalid(
                    format!("{field}.step"),
                    humantime::format_duration(w.step).to_string(),
                    "step must be a whole number of seconds, at least 1s",
                    "use e.g. \"1m\"",
                ));
            }
            if w.size < w.step || w.size.as_millis() % w.step.as_millis() != 0 {
                return Err(invalid(
                    format!("{field}.size"),
                    humantime::format_duration(w.size).to_string(),
                    "size must be a whole multiple of step",
                    format!("use a multiple of {}", humantime::format_duration(w.step)),
                ));
            }
            if w.size.as_millis() / w.step.as_millis() > 10_000 {
                return Err(invalid(
                    format!("{field}.size"),
                    humantime::format_duration(w.size).to_string(),
                    "more than 10000 buckets per window",
                    "use a larger step",
                ));
            }
        }
        if e.allowed_lateness > Duration::from_secs(3600) {
            return Err(invalid(
                "engine.allowed_lateness",
                humantime::format_duration(e.allowed_lateness).to_string(),
                "more than 1h delays every alert by that much",
                "use seconds to minutes, e.g. \"30s\"",
            ));
        }
        if e.tick_interval.is_zero() || e.tick_interval > Duration::from_secs(60) {
            return Err(invalid(
                "engine.tick_interval",
                humantime::format_duration(e.tick_interval).to_string(),
                "must be between 1ms and 60s",
                "use e.g. \"200ms\"",
            ));
        }
        if e.dedup_capacity == 0 || e.dedup_capacity > 100_000_000 {
            return Err(invalid(
                "engine.dedup_capacity",
                e.dedup_capacity,
                "must be between 1 and 100000000",
                "use e.g. 1000000 (about 20 MB)",
            ));
        }
        if e.max_future < Duration::from_secs(1) {
            return Err(invalid(
                "engine.max_future",
                humantime::format_duration(e.max_future).to_string(),
                "shorter than 1s rejects normal clock skew",
                "use e.g. \"1h\"",
            ));
        }
        if e.idle_timeout.is_zero() {
            return Err(invalid("engine.idle_timeout", "0s", "must be positive", "use e.g. \"30s\""));
        }
        let mut rule_names = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let field = format!("rules[{i}]");
            if r.name.trim().is_empty() || !rule_names.insert(r.name.as_str()) {
                return Err(invalid(
                    format!("{field}.name"),
                    &r.name,
                    "empty or used twice",
                    "give each rule its own name",
                ));
            }
            if Metric::from_name(&r.metric).is_none() {
                return Err(invalid(
                    format!("{field}.metric"),
                    &r.metric,
                    "no such metric",
                    format!("use one of {}", Metric::names().join(", ")),
                ));
            }
            if !names.contains(r.window.as_str()) {
                let known: Vec<_> = e.windows.iter().map(|w| w.name.as_str()).collect();
                return Err(invalid(
                    format!("{field}.window"),
                    &r.window,
                    "no window has that name",
                    format!("use one of {} or define it under [[engine.windows]]", known.join(", ")),
                ));
            }
            if !(r.threshold > 0.0 && r.threshold < 1.0) {
                return Err(invalid(
                    format!("{field}.threshold"),
                    r.threshold,
                    "a rate threshold is a fraction between 0 and 1",
                    "write 10% as 0.10",
                ));
            }
            if !(r.confidence >= 0.5 && r.confidence < 1.0) {
                return Err(invalid(
                    format!("{field}.confidence"),
                    r.confidence,
                    "must be in [0.5, 1)",
                    "use e.g. 0.95",
                ));
            }
            if r.min_orders == 0 {
                return Err(invalid(
                    format!("{field}.min_orders"),
                    r.min_orders,
                    "a rate over zero orders means nothing",
                    "use at least 1; 30 is a sane floor",
                ));
            }
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                &self.http.listen,
                "not an ip:port address",
                "use e.g. \"127.0.0.1:9464\"",
            ));
        }
        Ok(())
    }

    /// The engine's view of this config.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            windows: self
                .engine
                .windows
                .iter()
                .map(|w| WindowSpec {
                    name: w.name.clone(),
                    size_ms: w.size.as_millis() as i64,
                    step_ms: w.step.as_millis() as i64,
                })
                .collect(),
            allowed_lateness_ms: self.engine.allowed_lateness.as_millis() as i64,
            idle_timeout_ms: self.engine.idle_timeout.as_millis() as i64,
            max_future_ms: self.engine.max_future.as_millis() as i64,
            dedup_horizon_ms: self.engine.dedup_horizon.unwrap_or(self.engine.allowed_lateness).as_millis() as i64,
            dedup_capacity: self.engine.dedup_capacity,
        }
    }

    /// The rules, resolved against the windows. Call after [`validate`](Self::validate).
    pub fn rate_rules(&self) -> Vec<RateRule> {
        self.rules
            .iter()
            .map(|r| RateRule {
                name: r.name.clone(),
                metric: Metric::from_name(&r.metric).unwrap_or(Metric::RefundRate),
                window: self.engine.windows.iter().position(|w| w.name == r.window).unwrap_or(0),
                window_name: r.window.clone(),
                threshold: r.threshold,
                min_denominator: r.min_orders,
                min_numerator: r.min_refunds,
                z: stats::z_for_confidence(r.confidence),
                severity: r.severity,
                runbook_url: r.runbook_url.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../config/peakguard.toml");
        let cfg = parse(text).expect("config/peakguard.toml parses");
        assert!(!cfg.rules.is_empty());
    }

    #[test]
    fn unknown_window_names_field_value_and_fix() {
        let err = parse("[[rules]]\nname = \"r\"\nmetric = \"refund_rate\"\nwindow = \"15m\"\nthreshold = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules[0].window"), "{err}");
        assert!(err.contains("\"15m\""), "{err}");
        assert!(err.contains("use one of 5m, 1h, 24h, 30d"), "{err}");
    }

    #[test]
    fn unknown_metric_lists_the_known_ones() {
        let err = parse("[[rules]]\nname = \"r\"\nmetric = \"refunds\"\nwindow = \"5m\"\nthreshold = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules[0].metric") && err.contains("refund_rate, quality_refund_rate"), "{err}");
    }

    #[test]
    fn threshold_as_percent_is_rejected() {
        let err = parse("[[rules]]\nname = \"r\"\nmetric = \"refund_rate\"\nwindow = \"5m\"\nthreshold = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules[0].threshold") && err.contains("0.10"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let err = parse("[kafka]\nbroker = \"x:1\"\n").unwrap_err().to_string();
        assert!(err.contains("broker"), "{err}");
    }

    #[test]
    fn reserved_property_points_to_the_field() {
        let err = parse("[kafka.properties]\n\"group.id\" = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("kafka.group_id"), "{err}");
    }

    #[test]
    fn bad_duration_and_window_shape() {
        let err = parse("[engine]\nallowed_lateness = \"soon\"\n").unwrap_err().to_string();
        assert!(err.contains("allowed_lateness"), "{err}");
        let err = parse("[[engine.windows]]\nname = \"7m\"\nsize = \"7m\"\nstep = \"2m\"\n").unwrap_err().to_string();
        assert!(err.contains("engine.windows[0].size") && err.contains("multiple of 2m"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let cfg = parse("[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"SASL_SSL\"\n")
            .unwrap();
        let dump = format!("{:?}", cfg.kafka);
        assert!(!dump.contains("hunter2") && dump.contains("<redacted>") && dump.contains("SASL_SSL"), "{dump}");
    }
}
