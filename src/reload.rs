//! Rules hot reload. On SIGHUP, or when the config file or its rules file
//! changes on disk (checked every [`POLL`]), the config is re-read and its
//! rules and campaign calendar handed to the worker through a
//! [`RulesUpdate`] slot. A bad file is rejected with its error, counted in
//! `peakguard_rules_reloads_total{result="rejected"}`, and the rules in force
//! stay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::rules::RuleBook;

/// Where a reload leaves new rules for the worker, which takes them at its next tick.
pub type RulesUpdate = Arc<Mutex<Option<RuleBook>>>;

/// How often the files are checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// What identifies a file's version: modification time and length (a
/// Kubernetes ConfigMap swap changes both through the symlink).
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The files a config at `path` is read from.
fn watched(cfg: &Config, path: &Path) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf()).chain(cfg.rules_path(path)).collect()
}

/// Re-reads `path`: on success puts its rules in every slot (one per worker,
/// and one for the scope merge) and returns true.
pub fn reload_once(current: &Config, path: &Path, slots: &[RulesUpdate], metrics: &Metrics) -> bool {
    match current.reload_rules(path) {
        Ok(book) => {
            tracing::info!(
                file = %path.display(),
                rules = book.rules.len(),
                phases = book.calendar.phases().len(),
                "rules reload accepted"
            );
            metrics.rules_reloads.with_label_values(&["accepted"]).inc();
            for slot in slots {
                if let Ok(mut s) = slot.lock() {
                    *s = Some(book.clone());
                }
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "rules reload rejected; the rules in force stay");
            metrics.rules_reloads.with_label_values(&["rejected"]).inc();
            false
        }
    }
}

/// Watches for SIGHUP and for changes of the config file (and its rules
/// file) until `stop`; each triggers [`reload_once`].
pub fn spawn(current: Config, path: PathBuf, slots: Vec<RulesUpdate>, metrics: Arc<Metrics>, stop: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; file changes still reload rules"))
            .ok();
        let mut files = watched(&current, &path);
        let mut stamps: Vec<_> = files.iter().map(|f| stamp(f)).collect();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let why = tokio::select! {
                _ = stop.cancelled() => return,
                _ = hangup => "SIGHUP",
                _ = poll.tick() => {
                    let now: Vec<_> = files.iter().map(|f| stamp(f)).collect();
                    if now == stamps {
                        continue;
                    }
                    "file change"
                }
            };
            tracing::info!(trigger = why, file = %path.display(), "reloading rules");
            reload_once(&current, &path, &slots, &metrics);
            // The rules file may have been renamed in the config: watch what it names now.
            if let Ok(cfg) = Config::load(&path) {
                files = watched(&cfg, &path);
            }
            stamps = files.iter().map(|f| stamp(f)).collect();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "[[rules]]\nname = \"r\"\nmetric = \"refund_rate\"\nwindow = \"5m\"\nthreshold = 0.1\n";

    async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..60 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_changed_rules_file_is_reloaded_and_a_bad_one_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("peakguard.toml");
        let rules_path = dir.path().join("rules.toml");
        std::fs::write(&cfg_path, "rules_file = \"rules.toml\"\n").unwrap();
        std::fs::write(&rules_path, RULE).unwrap();
        let cfg = Config::load(&cfg_path).unwrap();
        let (slot, metrics, stop) = (RulesUpdate::default(), Arc::new(Metrics::new()), CancellationToken::new());
        spawn(cfg, cfg_path.clone(), vec![slot.clone()], metrics.clone(), stop.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;

        std::fs::write(&rules_path, RULE.replace("0.1", "0.25").replace("\"r\"", "\"renamed\"")).unwrap();
        let taken = || slot.lock().unwrap().take();
        let mut book = None;
        assert!(
            wait_for(|| {
                book = taken();
                book.is_some()
            })
            .await,
            "the change was not picked up"
        );
        let book = book.unwrap();
        assert_eq!((book.rules[0].name.as_str(), book.rules[0].threshold), ("renamed", 0.25));
        assert_eq!(metrics.rules_reloads.with_label_values(&["accepted"]).get(), 1);

        std::fs::write(&rules_path, RULE.replace("0.1", "12.5")).unwrap();
        let rejected = || metrics.rules_reloads.with_label_values(&["rejected"]).get() == 1;
        assert!(wait_for(rejected).await, "the bad file was not rejected");
        assert!(taken().is_none(), "a bad file must not replace the rules in force");
        stop.cancel();
    }
}
