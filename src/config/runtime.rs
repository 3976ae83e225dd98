//! The `[checkpoint]` and `[shutdown]` sections: where partition state is
//! checkpointed, how often, and how long a stop may take to drain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Local directory for checkpoints (relative to the config file); none
    /// or empty: no local copies.
    pub dir: Option<PathBuf>,
    /// Compacted topic for checkpoints, created when missing; empty: none.
    pub topic: String,
    /// How often every assigned partition is checkpointed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { dir: None, topic: "peakguard.checkpoints".into(), interval: Duration::from_secs(30) }
    }
}

impl CheckpointConfig {
    /// Checkpoints are written somewhere.
    pub fn enabled(&self) -> bool {
        self.local_dir().is_some() || !self.topic.is_empty()
    }

    pub fn local_dir(&self) -> Option<&Path> {
        self.dir.as_deref().filter(|d| !d.as_os_str().is_empty())
    }

    /// Makes a relative `dir` relative to the config file at `config_path`.
    pub(super) fn resolve(&mut self, config_path: &Path) {
        if let Some(d) = self.dir.as_mut().filter(|d| d.is_relative() && !d.as_os_str().is_empty()) {
            if let Some(base) = config_path.parent() {
                *d = base.join(&*d);
            }
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(3600) {
            return Err(invalid(
                "checkpoint.interval",
                humantime::format_duration(self.interval).to_string(),
                "outside 1s..1h",
                "checkpoint every few seconds to a few minutes, e.g. \"30s\": a restart re-reads at most one interval",
            ));
        }
        if self.topic.contains(char::is_whitespace) {
            return Err(invalid("checkpoint.topic", &self.topic, "contains whitespace", "use a Kafka topic name"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT: at most this long to finish the batch, checkpoint,
    /// commit and flush sinks before exiting anyway.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_timeout: Duration::from_secs(30) }
    }
}
