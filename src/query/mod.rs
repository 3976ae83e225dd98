//! The read side of the query API: what the HTTP handlers serve, kept
//! apart from the worker's state so a query never touches (or locks) the
//! hot path.
//!
//! * Firing alerts: a `DashMap` by fingerprint, updated as notifications go out.
//! * Top-K lists and the rules in force: snapshots replaced once a second.
//! * A shop's aggregates: a `DashMap` cache. On a miss the handler leaves a
//!   request in a mailbox; the worker answers between two poll batches
//!   (within `engine.tick_interval`) from its own thread, and the answer is
//!   cached for [`SHOP_CACHE_TTL`]. Keeping a second copy of every shop's
//!   windows would double the memory of a million shops; this costs one
//!   read per queried shop.
//!
//! * [`shop`]: a shop's report, built from the engine (pure).

pub mod shop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::pipeline::topk::TopList;
use crate::rules::{Alert, AlertStatus, RuleSet};
pub use shop::ShopReport;

/// How long a shop's answer is reused.
pub const SHOP_CACHE_TTL: Duration = Duration::from_secs(1);

/// A shop query waiting for the worker.
pub type ShopRequest = (String, oneshot::Sender<Option<Arc<ShopReport>>>);

/// A rule in force, as `/api/v1/rules` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub scope: &'static str,
    pub kind: &'static str,
    pub metric: &'static str,
    pub window: String,
    pub threshold: f64,
    pub min_denominator: u64,
    pub min_numerator: u64,
    pub severity: &'static str,
    pub for_seconds: i64,
    pub keep_firing_for_seconds: i64,
    pub firing: u64,
    pub pending: u64,
}

/// The rules in force and the campaign phase, as `/api/v1/rules` shows them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RulesInfo {
    pub rules: Vec<RuleInfo>,
    /// (name, start ms, end ms) of every phase.
    pub phases: Vec<(String, i64, i64)>,
    pub current_phase: Option<String>,
}

impl RulesInfo {
    pub fn of(rules: &RuleSet, watermark: Option<crate::event::Millis>) -> RulesInfo {
        let counts = rules.counts_by_rule();
        let rules_info = rules
            .rules()
            .iter()
            .zip(counts)
            .map(|(r, (firing, pending))| RuleInfo {
                name: r.name.clone(),
                scope: r.scope.as_str(),
                kind: if r.spike.is_some() {
                    "spike"
                } else if r.confirm.is_some() {
                    "multi_window"
                } else {
                    "ratio"
                },
                metric: r.metric.name(),
                window: r.window_name.clone(),
                threshold: r.threshold,
                min_denominator: r.min_denominator,
                min_numerator: r.min_numerator,
                severity: r.severity.as_str(),
                for_seconds: r.for_ms / 1000,
                keep_firing_for_seconds: r.keep_firing_for_ms / 1000,
                firing,
                pending,
            })
            .collect();
        let cal = rules.calendar();
        RulesInfo {
            rules: rules_info,
            phases: cal.phases().iter().map(|p| (p.name.clone(), p.start, p.end)).collect(),
            current_phase: watermark.and_then(|wm| cal.phase_at(wm)).map(|p| p.name.clone()),
        }
    }
}

#[derive(Default)]
pub struct ReadView {
    alerts: DashMap<String, Alert>,
    top: RwLock<Arc<Vec<TopList>>>,
    rules: RwLock<Arc<RulesInfo>>,
    shops: DashMap<String, (Instant, Arc<ShopReport>)>,
    requests: Mutex<Vec<ShopRequest>>,
    /// Partitions assigned, and no backlog left from their assignment.
    ready: AtomicBool,
}

impl ReadView {
    pub fn new() -> Arc<ReadView> {
        Arc::new(ReadView::default())
    }

    /// A notification went out: firing alerts are kept, resolved ones dropped.
    pub fn record(&self, a: &Alert) {
        match a.status {
            AlertStatus::Firing => {
                self.alerts.insert(a.fingerprint.clone(), a.clone());
            }
            AlertStatus::Resolved => {
                self.alerts.remove(&a.fingerprint);
            }
        }
    }

    /// Firing alerts, newest first.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.alerts.iter().map(|e| e.value().clone()).collect();
        v.sort_by(|a, b| b.starts_at.cmp(&a.starts_at).then_with(|| a.fingerprint.cmp(&b.fingerprint)));
        v
    }

    pub fn set_top(&self, lists: Vec<TopList>) {
        if let Ok(mut t) = self.top.write() {
            *t = Arc::new(lists);
        }
    }

    pub fn top(&self) -> Arc<Vec<TopList>> {
        self.top.read().map(|t| t.clone()).unwrap_or_default()
    }

    pub fn set_rules(&self, rules: RulesInfo) {
        if let Ok(mut r) = self.rules.write() {
            *r = Arc::new(rules);
        }
    }

    pub fn rules(&self) -> Arc<RulesInfo> {
        self.rules.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// A cached answer for `shop`, if fresh.
    pub fn cached_shop(&self, shop: &str) -> Option<Arc<ShopReport>> {
        let e = self.shops.get(shop)?;
        (e.0.elapsed() < SHOP_CACHE_TTL).then(|| e.1.clone())
    }

    /// Leaves a request for the worker; the answer comes on the returned channel.
    pub fn request_shop(&self, shop: &str) -> oneshot::Receiver<Option<Arc<ShopReport>>> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut r) = self.requests.lock() {
            r.push((shop.to_string(), tx));
        }
        rx
    }

    /// The worker's side: takes the waiting requests (cheap when there are none).
    pub fn take_requests(&self) -> Vec<ShopRequest> {
        match self.requests.try_lock() {
            Ok(mut r) if !r.is_empty() => std::mem::take(&mut *r),
            _ => Vec::new(),
        }
    }

    /// The worker's answer, cached, then sent.
    pub fn answer(&self, request: ShopRequest, report: Option<ShopReport>) {
        let report = report.map(Arc::new);
        if let Some(r) = &report {
            self.shops.insert(request.0.clone(), (Instant::now(), r.clone()));
            // Bounded: a scraper walking every shop must not grow this forever.
            if self.shops.len() > 10_000 {
                self.shops.retain(|_, (at, _)| at.elapsed() < SHOP_CACHE_TTL);
            }
        }
        let _ = request.1.send(report);
    }
}
