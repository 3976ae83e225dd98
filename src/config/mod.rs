//! The TOML configuration (`peakguard run --config FILE`), its defaults and
//! its validation. Unknown fields are rejected; every validation error names
//! the field, the value and the fix, and is reported at start, never later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{EngineConfig, WindowSpec};
use crate::pipeline::topk::TopKConfig;
use crate::rules::{stats, Calendar, Confirm, Metric, RateRule, RuleBook, Spike};

use rules::phase;
pub use rules::{parse_time, PhaseConfig, RuleConfig, RulesFile, DEFAULT_BASELINE_RATIO};
pub use runtime::{CheckpointConfig, ShutdownConfig};
pub use schemas::SchemasConfig;

/// A configuration problem, reported at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}` = {value} is invalid: {problem}. Fix: {fix}")]
    Invalid { field: String, value: String, problem: String, fix: String },
    #[error("in rules file {path}: {inner}")]
    InRulesFile { path: PathBuf, inner: Box<ConfigError> },
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
    /// A separate TOML file with `[[rules]]` and `[[phases]]` (relative to
    /// this file's directory); then this file holds neither.
    pub rules_file: Option<PathBuf>,
    pub rules: Vec<RuleConfig>,
    /// The campaign calendar.
    pub phases: Vec<PhaseConfig>,
    pub http: HttpConfig,
    pub topk: TopKSection,
    pub webhook: WebhookConfig,
    pub alertmanager: AlertmanagerConfig,
    pub checkpoint: CheckpointConfig,
    pub shutdown: ShutdownConfig,
}

/// The Alertmanager sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://alertmanager:9093`; empty disables the sink.
    pub url: String,
    /// Firing alerts are re-sent this often (keep it under Alertmanager's `resolve_timeout`).
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            url: String::new(),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            attempts: 5,
        }
    }
}

/// The generic webhook sink.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where alerts are POSTed as JSON; empty disables the sink.
    pub url: String,
    /// Signs each body: `X-Peakguard-Signature: sha256=<hex HMAC-SHA256>`. Never printed.
    pub secret: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deliveries tried per alert before it counts as an error.
    pub attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig { url: String::new(), secret: String::new(), timeout: Duration::from_secs(10), attempts: 5 }
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &if self.secret.is_empty() { "" } else { "<redacted>" })
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish()
    }
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
    /// Topics keyed by something other than the shop id, re-keyed by shop
    /// into one of `topics` (see [`crate::source::repartition`]).
    pub repartition: Vec<Repartition>,
    /// Worker threads in this process, each its own consumer in the group
    /// owning the shops of its partitions; 0 (the default): one per core.
    /// Never more than the topics have partitions.
    pub workers: usize,
}

/// At most this many workers per process (`kafka.workers`).
pub const MAX_WORKERS: usize = 256;

/// `[[kafka.repartition]]`: read `source` (keyed otherwise, e.g. by order
/// id), write each record unchanged to `target`, keyed by its shop id.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repartition {
    pub source: String,
    /// One of `kafka.topics`.
    pub target: String,
    /// librdkafka partitioner for `target`: the one the producers of the other
    /// event topics use, so that a shop lands on the same partition number
    /// everywhere. Java clients: `murmur2_random`; librdkafka clients:
    /// `consistent_random`.
    #[serde(default = "default_partitioner")]
    pub partitioner: String,
}

fn default_partitioner() -> String {
    "murmur2_random".into()
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
            repartition: Vec::new(),
            workers: 0,
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
            .field("repartition", &self.repartition)
            .field("workers", &self.workers)
            .finish()
    }
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
    /// Shops to size the shop tables for at start (0: grow as shops come).
    pub expected_shops: usize,
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
            expected_shops: 0,
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

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub name: String,
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    #[serde(with = "humantime_serde")]
    pub step: Duration,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of /metrics, /healthz, /readyz and /api/v1; localhost by default.
    pub listen: String,
    /// When set, /api/v1 requires `Authorization: Bearer <token>`. Never printed.
    pub token: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:9464".into(), token: String::new() }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("token", &if self.token.is_empty() { "" } else { "<redacted>" })
            .finish()
    }
}

/// The top-K shops per metric and window (/metrics and /api/v1/top).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopKSection {
    /// Shops per list; 0 turns it off.
    pub k: usize,
    /// Metrics ranked (every window is).
    pub metrics: Vec<String>,
    /// Shops under this denominator (e.g. orders paid) are not ranked.
    pub min_orders: u64,
    /// Confidence of the Wilson lower bound shops are ranked by.
    pub confidence: f64,
}

impl Default for TopKSection {
    fn default() -> Self {
        let d = TopKConfig::default();
        TopKSection {
            k: d.k,
            metrics: d.metrics.iter().map(|m| m.name().to_string()).collect(),
            min_orders: d.min_denominator,
            confidence: 0.95,
        }
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
            std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { path: path.to_path_buf(), cause })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        if let Some(file) = cfg.rules_path(path) {
            if !cfg.rules.is_empty() || !cfg.phases.is_empty() {
                return Err(invalid(
                    "rules_file",
                    file.display().to_string(),
                    "rules or phases are also defined in the config file",
                    "keep [[rules]] and [[phases]] in one place: the rules file, or the config file without rules_file",
                ));
            }
            let rules = RulesFile::load(&file)?;
            cfg.rules = rules.rules;
            cfg.phases = rules.phases;
            cfg.finish_rules();
            cfg.validate_rules().map_err(|e| ConfigError::InRulesFile { path: file, inner: Box::new(e) })?;
        } else {
            cfg.finish_rules();
        }
        cfg.checkpoint.resolve(path);
        cfg.validate()?;
        cfg.checkpoint.validate()?;
        Ok(cfg)
    }

    /// No rules at all means the default rule.
    fn finish_rules(&mut self) {
        if self.rules.is_empty() {
            self.rules.push(RuleConfig::default_refund_rate());
        }
    }

    /// Where `rules_file` points, relative to the config file at `config_path`.
    pub fn rules_path(&self, config_path: &Path) -> Option<PathBuf> {
        let file = self.rules_file.as_ref()?;
        Some(match config_path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.clone(),
        })
    }

    /// The defaults, with the default rule.
    pub fn with_defaults() -> Config {
        Config { rules: vec![RuleConfig::default_refund_rate()], ..Config::default() }
    }

    /// This config with the rules and phases of the rules file at `path`
    /// instead of its own, validated against its windows
    /// (`peakguard rules check`).
    pub fn with_rules_file(&self, path: &Path) -> Result<Config, ConfigError> {
        let rules = RulesFile::load(path)?;
        let mut cfg = Config { rules: rules.rules, phases: rules.phases, rules_file: None, ..self.clone() };
        cfg.finish_rules();
        cfg.validate_rules().map_err(|e| ConfigError::InRulesFile { path: path.to_path_buf(), inner: Box::new(e) })?;
        Ok(cfg)
    }

    /// Re-reads the config at `path` (and its rules file) for a rules reload
    /// (SIGHUP or a file change). It must be valid and keep the engine's
    /// windows (rules point into them); anything else that changed is
    /// ignored until a restart.
    pub fn reload_rules(&self, path: &Path) -> Result<RuleBook, ConfigError> {
        let new = Config::load(path)?;
        if new.engine.windows != self.engine.windows {
            return Err(invalid(
                "engine.windows",
                new.engine.windows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
                "windows cannot change while running",
                "restart peakguard to change windows; rules and phases alone reload on SIGHUP or file change",
            ));
        }
        Ok(new.rule_book())
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
            expected_shops: self.engine.expected_shops,
        }
    }

    /// The top-K settings. Call after [`validate`](Self::validate).
    /// `kafka.workers`, with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        match self.kafka.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub fn top_k_config(&self) -> TopKConfig {
        let t = &self.topk;
        TopKConfig {
            k: t.k,
            metrics: t.metrics.iter().filter_map(|m| Metric::from_name(m)).collect(),
            min_denominator: t.min_orders,
            z: stats::z_for_confidence(t.confidence),
        }
    }

    /// The rules and the calendar. Call after [`validate`](Self::validate).
    pub fn rule_book(&self) -> RuleBook {
        RuleBook { rules: self.rate_rules(), calendar: Calendar::new(self.phases.iter().map(phase).collect()) }
    }

    /// The rules, resolved against the windows. Call after [`validate`](Self::validate).
    pub fn rate_rules(&self) -> Vec<RateRule> {
        let window = |name: &str| self.engine.windows.iter().position(|w| w.name == name).unwrap_or(0);
        self.rules
            .iter()
            .map(|r| RateRule {
                name: r.name.clone(),
                scope: r.scope,
                metric: Metric::from_name(&r.metric).unwrap_or(Metric::RefundRate),
                window: window(&r.window),
                window_name: r.window.clone(),
                threshold: r.threshold,
                min_denominator: r.min_orders,
                min_numerator: r.min_refunds,
                z: stats::z_for_confidence(r.confidence),
                severity: r.severity,
                runbook_url: r.runbook_url.clone(),
                for_ms: r.for_.as_millis() as i64,
                keep_firing_for_ms: r.keep_firing_for.as_millis() as i64,
                confirm: r.confirm_window.as_ref().map(|name| Confirm {
                    window: window(name),
                    window_name: name.clone(),
                    threshold: r.confirm_threshold.unwrap_or(r.threshold),
                }),
                spike: r.is_spike().then(|| Spike {
                    baseline: r.baseline_window.as_ref().map(|name| (window(name), name.clone())),
                    baseline_phase: r.baseline_phase.clone(),
                    baseline_ratio: r.baseline_ratio.unwrap_or(DEFAULT_BASELINE_RATIO),
                    require_baseline: r.require_baseline.unwrap_or(true),
                    category_ratio: r.category_ratio,
                }),
                labels: r.labels.clone(),
                annotations: r.annotations.clone(),
            })
            .collect()
    }
}

mod rules;
mod runtime;
mod schemas;
mod validate;
mod validate_rules;

#[cfg(test)]
mod tests;
