//! The read side of the query API: what the HTTP handlers serve, kept
//! apart from the worker's state so a query never touches (or locks) the
//! hot path.
//!
//! * Firing alerts: a `DashMap` by fingerprint, updated as notifications go out.
//! * Top-K lists and the rules in force: snapshots replaced once a second.
//! * A shop's aggregates: a `DashMap` cache. On a miss the handler leaves a
//!   request in every worker's mailbox; each answers between two poll
//!   batches (within `engine.tick_interval`) from its own thread, the one
//!   that owns the shop with its report, and the answer is cached for
//!   [`SHOP_CACHE_TTL`]. The shop is unknown once every worker said so.
//! * Readiness: every worker that has partitions has restored them and
//!   caught up, and at least one has partitions. Keeping a second copy of every shop's
//!   windows would double the memory of a million shops; this costs one
//!   read per queried shop.
//!
//! * [`shop`]: a shop's report, built from the engine (pure).

pub mod shop;

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A shop query waiting for the workers: the first report wins; `None`
/// once every worker has answered without one.
pub struct ShopRequest {
    pub shop: String,
    reply: Mutex<Option<oneshot::Sender<Option<Arc<ShopReport>>>>>,
    unanswered: AtomicUsize,
}

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
    /// Per worker: the requests waiting for it.
    requests: Vec<Mutex<Vec<Arc<ShopRequest>>>>,
    /// Per worker: `None` without partitions, else whether they are
    /// restored and caught up on the backlog they had when assigned.
    ready: Mutex<Vec<Option<bool>>>,
}

impl ReadView {
    /// The view of a process with one worker.
    pub fn new() -> Arc<ReadView> {
        ReadView::for_workers(1)
    }

    /// The view of a process with `workers` workers.
    pub fn for_workers(workers: usize) -> Arc<ReadView> {
        let n = workers.max(1);
        Arc::new(ReadView {
            requests: (0..n).map(|_| Mutex::default()).collect(),
            ready: Mutex::new(vec![Some(false); n]),
            ..ReadView::default()
        })
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

    /// Worker `worker`'s readiness: `None` when it has no partitions.
    pub fn set_ready(&self, worker: usize, ready: Option<bool>) {
        if let Ok(mut r) = self.ready.lock() {
            if let Some(slot) = r.get_mut(worker) {
                *slot = ready;
            }
        }
    }

    /// Some worker has partitions, and every one that has is ready.
    pub fn is_ready(&self) -> bool {
        let Ok(r) = self.ready.lock() else { return false };
        r.iter().any(Option::is_some) && r.iter().flatten().all(|&ready| ready)
    }

    /// A cached answer for `shop`, if fresh.
    pub fn cached_shop(&self, shop: &str) -> Option<Arc<ShopReport>> {
        let e = self.shops.get(shop)?;
        (e.0.elapsed() < SHOP_CACHE_TTL).then(|| e.1.clone())
    }

    /// Leaves a request for every worker; the answer comes on the returned channel.
    pub fn request_shop(&self, shop: &str) -> oneshot::Receiver<Option<Arc<ShopReport>>> {
        let (tx, rx) = oneshot::channel();
        let request = Arc::new(ShopRequest {
            shop: shop.to_string(),
            reply: Mutex::new(Some(tx)),
            unanswered: AtomicUsize::new(self.requests.len()),
        });
        for mailbox in &self.requests {
            if let Ok(mut r) = mailbox.lock() {
                r.push(request.clone());
            }
        }
        rx
    }

    /// Worker `worker`'s side: takes its waiting requests (cheap when there are none).
    pub fn take_requests(&self, worker: usize) -> Vec<Arc<ShopRequest>> {
        match self.requests.get(worker).map(Mutex::try_lock) {
            Some(Ok(mut r)) if !r.is_empty() => std::mem::take(&mut *r),
            _ => Vec::new(),
        }
    }

    /// A worker's answer: a report is cached and sent at once; `None` is
    /// sent when it is the last worker's answer and none had a report.
    pub fn answer(&self, request: &ShopRequest, report: Option<ShopReport>) {
        let last = request.unanswered.fetch_sub(1, Ordering::AcqRel) == 1;
        let Some(report) = report.map(Arc::new) else {
            if last {
                if let Some(tx) = request.reply.lock().ok().and_then(|mut r| r.take()) {
                    let _ = tx.send(None);
                }
            }
            return;
        };
        self.shops.insert(request.shop.clone(), (Instant::now(), report.clone()));
        // Bounded: a scraper walking every shop must not grow this forever.
        if self.shops.len() > 10_000 {
            self.shops.retain(|_, (at, _)| at.elapsed() < SHOP_CACHE_TTL);
        }
        if let Some(tx) = request.reply.lock().ok().and_then(|mut r| r.take()) {
            let _ = tx.send(Some(report));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shop: &str) -> ShopReport {
        ShopReport { shop_id: shop.into(), category: "c".into(), watermark: Some(1), windows: Default::default() }
    }

    #[test]
    fn a_shop_query_is_answered_by_the_worker_that_owns_it() {
        let view = ReadView::for_workers(3);
        let mut rx = view.request_shop("s1");
        let asked: Vec<_> = (0..3).map(|w| view.take_requests(w)).collect();
        assert!(asked.iter().all(|r| r.len() == 1), "every worker is asked");
        view.answer(&asked[0][0], None);
        assert!(rx.try_recv().is_err(), "one worker without it is not the answer yet");
        view.answer(&asked[2][0], Some(report("s1")));
        assert_eq!(rx.try_recv().expect("answered").expect("found").shop_id, "s1");
        view.answer(&asked[1][0], None);
        assert!(view.cached_shop("s1").is_some());
    }

    #[test]
    fn an_unknown_shop_is_unknown_once_every_worker_said_so() {
        let view = ReadView::for_workers(2);
        let mut rx = view.request_shop("nobody");
        let (a, b) = (view.take_requests(0), view.take_requests(1));
        view.answer(&a[0], None);
        assert!(rx.try_recv().is_err());
        view.answer(&b[0], None);
        assert_eq!(rx.try_recv().expect("answered"), None);
    }

    #[test]
    fn ready_when_every_worker_with_partitions_is() {
        let view = ReadView::for_workers(2);
        assert!(!view.is_ready(), "no worker has reported");
        view.set_ready(0, Some(true));
        assert!(!view.is_ready(), "worker 1 has not reported");
        view.set_ready(1, None);
        assert!(view.is_ready(), "worker 1 has no partitions");
        view.set_ready(1, Some(false));
        assert!(!view.is_ready(), "worker 1 is catching up");
        view.set_ready(0, None);
        view.set_ready(1, None);
        assert!(!view.is_ready(), "no partitions at all");
    }
}
