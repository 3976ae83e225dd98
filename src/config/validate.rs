//! Validation of a parsed [`Config`]: run once at start; every error names
//! the field, the value and the fix.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::{invalid, Config, ConfigError, RESERVED_PROPERTIES};

/// The most shops `engine.expected_shops` may size the tables for.
const MAX_EXPECTED_SHOPS: usize = 20_000_000;

impl Config {
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
        const PARTITIONERS: &[&str] =
            &["murmur2_random", "murmur2", "consistent_random", "consistent", "fnv1a_random", "fnv1a"];
        for (i, r) in k.repartition.iter().enumerate() {
            if !k.topics.contains(&r.target) {
                return Err(invalid(
                    format!("kafka.repartition[{i}].target"),
                    &r.target,
                    "not one of kafka.topics",
                    "add it to kafka.topics (it is read like any event topic)",
                ));
            }
            if r.source.is_empty() || k.topics.contains(&r.source) || r.source == r.target {
                return Err(invalid(
                    format!("kafka.repartition[{i}].source"),
                    &r.source,
                    "empty, or one of kafka.topics",
                    "name the topic keyed otherwise; only its re-keyed copy (target) belongs in kafka.topics",
                ));
            }
            if !PARTITIONERS.contains(&r.partitioner.as_str()) {
                return Err(invalid(
                    format!("kafka.repartition[{i}].partitioner"),
                    &r.partitioner,
                    "not a librdkafka partitioner",
                    "use murmur2_random (Java producers) or consistent_random (librdkafka producers)",
                ));
            }
        }
        if k.workers > super::MAX_WORKERS {
            return Err(invalid(
                "kafka.workers",
                k.workers,
                format!("more than {} worker threads", super::MAX_WORKERS),
                "use 0 (one per core) or the number of cores; scale further with more processes in the group",
            ));
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
        if e.windows.len() > crate::engine::MAX_WINDOWS {
            return Err(invalid(
                "engine.windows",
                e.windows.len().to_string(),
                format!("more than {} windows", crate::engine::MAX_WINDOWS),
                "drop windows no rule or dashboard reads",
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
        if e.expected_shops > MAX_EXPECTED_SHOPS {
            return Err(invalid(
                "engine.expected_shops",
                e.expected_shops,
                "must be at most 20000000 (the tables would reserve over 5 GiB)",
                "set the shops you expect at peak, e.g. 1000000 (about 256 MB of tables), or 0 to grow as shops come",
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
        self.validate_rules()?;
        let sr = &self.schemas;
        check_sink_url("schemas.registry_url", &sr.registry_url, "http://schema-registry:8081")?;
        if !sr.registry_url.is_empty() && !(1..=20).contains(&sr.registry_attempts) {
            return Err(invalid(
                "schemas.registry_attempts",
                sr.registry_attempts,
                "must be between 1 and 20",
                "use e.g. registry_attempts = 5",
            ));
        }
        if !sr.registry_url.is_empty() && sr.registry_timeout.is_zero() {
            return Err(invalid("schemas.registry_timeout", "0s", "must be positive", "use e.g. \"5s\""));
        }
        let w = &self.webhook;
        check_sink_url("webhook.url", &w.url, "https://hooks.example.com/peakguard")?;
        if !w.url.is_empty() && (w.attempts == 0 || w.timeout.is_zero()) {
            return Err(invalid(
                "webhook.attempts",
                w.attempts,
                "attempts and timeout must be positive",
                "use e.g. attempts = 5, timeout = \"10s\"",
            ));
        }
        let am = &self.alertmanager;
        check_sink_url("alertmanager.url", &am.url, "http://alertmanager:9093")?;
        if !am.url.is_empty() && (am.resend_interval < Duration::from_secs(1) || am.attempts == 0) {
            return Err(invalid(
                "alertmanager.resend_interval",
                humantime::format_duration(am.resend_interval).to_string(),
                "resend_interval must be at least 1s and attempts positive",
                "use resend_interval = \"1m\" (Alertmanager's client contract)",
            ));
        }
        let t = &self.topk;
        if t.k > 100 {
            return Err(invalid(
                "topk.k",
                t.k,
                "more than 100 shops per list",
                "use 10 to 20; the query API serves more detail",
            ));
        }
        for (i, m) in t.metrics.iter().enumerate() {
            if crate::rules::Metric::from_name(m).is_none() {
                return Err(invalid(
                    format!("topk.metrics[{i}]"),
                    m,
                    "no such metric",
                    format!("use one of {}", crate::rules::Metric::names().join(", ")),
                ));
            }
        }
        if !(t.confidence >= 0.5 && t.confidence < 1.0) || t.min_orders == 0 {
            return Err(invalid(
                "topk.confidence",
                t.confidence,
                "confidence must be in [0.5, 1) and min_orders at least 1",
                "use confidence = 0.95, min_orders = 30",
            ));
        }
        if !self.http.token.is_empty() && self.http.token.len() < 16 {
            return Err(invalid(
                "http.token",
                "<redacted>",
                "shorter than 16 characters",
                "use a long random token, e.g. the output of `openssl rand -hex 32`",
            ));
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
}

/// An HTTP sink's URL: empty (sink off) or http(s).
fn check_sink_url(field: &str, url: &str, example: &str) -> Result<(), ConfigError> {
    if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
        return Ok(());
    }
    Err(invalid(field, url, "not an http(s) URL", format!("use e.g. \"{example}\", or \"\" to disable")))
}
