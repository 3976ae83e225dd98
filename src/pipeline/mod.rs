//! The pure heart of a worker: folds events into the [`Engine`] and runs the
//! [`RuleSet`] as event time advances. No IO and no clock of its own; the
//! Kafka worker, replay and the tests drive it the same way.
//!
//! Rules are evaluated on watermark ticks, at the end of every *complete*
//! bucket (one that ends at or before the watermark) since the previous tick,
//! for every shop whose counters changed (and that can reach a rule's
//! volume or a top-K list) and for every pending or firing alert. Reading
//! only complete buckets means a topic that lags behind another (orders
//! behind refunds) never makes a healthy shop look like a spike.
//!
//! * [`read`]: what a rule reads for one key (window, long window, baseline, peers).
//! * [`phase_baseline`]: shop baselines captured when a campaign phase ends.
//! * [`topk`]: the top-K shops per metric and window.
//! * [`merge`]: category and platform rules over several workers' shares.
//! * `rounds`: the shop rounds of each bucket end (pending lists, visit floors).
//! * `scopes`: category and platform rules in one pipeline, or its share.

pub mod merge;
mod phase_baseline;
mod prefetch;
mod read;
mod rounds;
mod scopes;
pub mod topk;

use merge::ScopeShare;
use phase_baseline::PhaseBaselines;
use rounds::Round;
use topk::{TopK, TopKConfig, TopList};

use std::collections::HashSet;

use crate::engine::window::bucket_of;
use crate::engine::{Engine, EngineConfig, Fold, SourceId, WindowSpec};
use crate::event::{Event, Millis};
use crate::rules::{fingerprint, Alert, AlertStatus, NotifyGate, RuleBook, RuleSet, Scope};

/// Shops the Kafka worker (and `peakguard bench`) visit for rules per tick
/// or per batch of records at most ([`Pipeline::with_visit_budget`]): as
/// many as the largest poll batch, so evaluation keeps pace with folding
/// (a window visits a shop at most once per bucket it was folded into).
pub const VISIT_BUDGET: usize = 4096;

/// Running totals of what a pipeline did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub folded: u64,
    pub ignored: u64,
    pub late: u64,
    pub duplicate: u64,
    pub future: u64,
    pub fired: u64,
    pub resolved: u64,
}

pub struct Pipeline {
    engine: Engine,
    rules: RuleSet,
    windows: Vec<WindowSpec>,
    /// Per window: the last complete bucket evaluated.
    evaluated: Vec<Option<i64>>,
    /// Per window: how many buckets behind the newest one a tick may go back.
    readable: Vec<i64>,
    stats: PipelineStats,
    gate: NotifyGate,
    phase_baselines: PhaseBaselines,
    topk: TopK,
    /// Per window: the evaluation round in progress, if any.
    rounds: Vec<Option<Round>>,
    /// Shops a tick or [`Pipeline::work`] visits at most.
    visit_budget: usize,
    /// Whether pending lists take only the shops their readers may act on.
    visit_floors: bool,
    /// [`Pipeline::with_scope_merge`]: category and platform reads waiting
    /// to be handed over, instead of evaluated here.
    scope_share: Option<ScopeShare>,
}

impl Pipeline {
    pub fn new(cfg: EngineConfig, rules: impl Into<RuleBook>) -> Pipeline {
        let windows = cfg.windows.clone();
        let evaluated = vec![None; windows.len()];
        let engine = Engine::new(cfg);
        // Exactly readable: as far behind a shop's newest bucket as its rings keep.
        let readable = (0..windows.len()).map(|w| engine.slack(w) as i64).collect();
        let rules = RuleSet::new(rules);
        let n_windows = windows.len();
        let mut p = Pipeline {
            engine,
            rules,
            windows,
            evaluated,
            readable,
            stats: PipelineStats::default(),
            gate: NotifyGate::default(),
            phase_baselines: PhaseBaselines::default(),
            topk: TopK::new(TopKConfig { k: 0, ..TopKConfig::default() }, n_windows),
            rounds: (0..n_windows).map(|_| None).collect(),
            visit_budget: usize::MAX,
            visit_floors: true,
            scope_share: None,
        };
        p.track_pending();
        p
    }

    /// Ranks shops per metric and window (off until called).
    pub fn with_top_k(mut self, cfg: TopKConfig) -> Pipeline {
        self.topk = TopK::new(cfg, self.windows.len());
        self.track_pending();
        self
    }

    /// How many shops a top-K list holds at most (0: off).
    pub fn top_k_len(&self) -> usize {
        self.topk.k()
    }

    /// The top-K lists at the last evaluated bucket of each window.
    pub fn top_k(&mut self) -> Vec<TopList> {
        let Some(ends) = self.evaluated.iter().copied().collect::<Option<Vec<i64>>>() else {
            return Vec::new(); // nothing evaluated yet
        };
        let end_ms: Vec<i64> = ends.iter().zip(&self.windows).map(|(k, w)| (k + 1) * w.step_ms).collect();
        let names: Vec<String> = self.windows.iter().map(|w| w.name.clone()).collect();
        self.topk.refresh(&self.engine, &ends, &names, &end_ms)
    }

    /// Spreads the rule evaluations of a completed bucket over calls: a
    /// tick (and each [`Pipeline::work`]) visits at most `shops` shops,
    /// and the rest wait for the next call, so a minute that touched
    /// 100,000 shops does not stall the reading of records. A round still
    /// unfinished when the window completes its next bucket is finished
    /// first. Unlimited by default (replays, tests).
    pub fn with_visit_budget(mut self, shops: usize) -> Pipeline {
        self.visit_budget = shops.max(1);
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// For restoring and dropping shards on rebalances.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Puts new rules in force (same windows); see [`RuleSet::reload`].
    pub fn reload_rules(&mut self, rules: impl Into<RuleBook>) -> usize {
        let n = self.rules.reload(rules);
        self.track_pending();
        n
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// Shops with a phase baseline for spike rule `rule`.
    pub fn phase_baseline_shops(&self, rule: &str) -> usize {
        self.phase_baselines.len(rule)
    }

    pub fn gate(&self) -> &NotifyGate {
        &self.gate
    }

    /// Alerts read back from the alerts topic at start (oldest first); see [`NotifyGate`].
    /// With [`Pipeline::with_scope_merge`], only shop alerts: the merge
    /// owns the category and platform ones.
    pub fn restore_alerts(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        let merged = self.scope_share.is_some();
        self.gate.restore(alerts.into_iter().filter(|a| !merged || a.scope == Scope::Shop.as_str()));
    }

    /// Partitions are catching up on a backlog: hold firing notifications.
    pub fn hold_notifications(&mut self) {
        self.gate.hold();
    }

    /// The backlog is read: sends held alerts still firing, and resolves
    /// restored alerts this run has data for that are no longer active.
    pub fn release_notifications(&mut self, out: &mut Vec<Alert>) {
        let before = out.len();
        let rules = &self.rules;
        let active: std::collections::HashSet<String> = rules
            .active()
            .map(|(r, key)| fingerprint(&rules.rules()[r].name, rules.rules()[r].scope.as_str(), key))
            .collect();
        let engine = &self.engine;
        let known = |a: &Alert| match a.scope.as_str() {
            "shop" => engine.shop(&a.shop_id).is_some(),
            "category" => engine.category(&a.category).is_some(),
            _ => engine.platform().is_some(),
        };
        let now = self.engine.watermark().current().unwrap_or(0);
        self.gate.release(now, known, |fp| active.contains(fp), out);
        self.count(out, before);
    }

    fn count(&mut self, out: &[Alert], from: usize) {
        for a in &out[from..] {
            match a.status {
                AlertStatus::Firing => self.stats.fired += 1,
                AlertStatus::Resolved => self.stats.resolved += 1,
            }
        }
    }

    pub fn watermark(&self) -> Option<Millis> {
        self.engine.watermark().current()
    }

    /// Whether this worker's category and platform shares are still to
    /// come ([`Pipeline::with_scope_merge`]): it has a watermark, or its
    /// watermark waits for a partition's first event. Such a worker holds the
    /// merge back, as such a partition holds one pipeline's watermark.
    pub fn holds_merge(&self, proc_now: Millis) -> bool {
        self.watermark().is_some() || self.engine.watermark().awaiting_first(proc_now)
    }

    pub fn assign(&mut self, source: SourceId, proc_now: Millis) {
        self.engine.watermark_mut().assign(source, proc_now);
    }

    pub fn revoke(&mut self, source: SourceId) {
        self.engine.watermark_mut().revoke(source);
    }

    /// `source` reached the end of its log.
    pub fn caught_up(&mut self, source: SourceId) {
        self.engine.watermark_mut().caught_up(source);
    }

    /// Folds one event.
    pub fn ingest(&mut self, source: SourceId, event: &Event, proc_now: Millis) -> Fold {
        let fold = self.engine.fold(source, event, proc_now);
        match fold {
            Fold::Folded => self.stats.folded += 1,
            Fold::Ignored => self.stats.ignored += 1,
            Fold::Late => self.stats.late += 1,
            Fold::Duplicate => self.stats.duplicate += 1,
            Fold::Future => self.stats.future += 1,
        }
        fold
    }

    /// Advances the watermark to processing time `proc_now` and evaluates the
    /// rules at every bucket that completed since the last tick.
    pub fn tick(&mut self, proc_now: Millis, out: &mut Vec<Alert>) {
        // Through the engine, not the tracker alone: the dedup memory forgets
        // the ids the watermark has passed by the horizon here.
        let Some(wm) = self.engine.update_watermark(proc_now) else {
            return;
        };
        self.phase_baselines.capture(wm, &self.rules, &self.engine);
        let ends: Vec<i64> = self.windows.iter().map(|w| bucket_of(wm, w.step_ms) - 1).collect();
        self.evaluate_through(&ends, 0, out);
    }

    /// End of input (replay, tests): everything has been read, so the last,
    /// partial bucket counts as complete.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.finish_at(None, out);
    }

    /// Where [`Pipeline::finish`] moves the watermark: the newest event
    /// time read (`None` before any).
    pub fn input_end(&self) -> Option<Millis> {
        self.engine.watermark().end()
    }

    /// [`Pipeline::finish`] for one of several workers
    /// ([`Pipeline::with_scope_merge`]): `last` is the [`Pipeline::input_end`]
    /// of the whole process. Another worker's input may end later than this
    /// one's, so the merge's last bucket ends need this worker's reads too:
    /// nothing more will be folded here, so reading ahead of its newest
    /// bucket is exact.
    pub fn finish_at(&mut self, last: Option<Millis>, out: &mut Vec<Alert>) {
        let Some(wm) = self.engine.watermark_mut().finish() else {
            return;
        };
        self.phase_baselines.capture(wm, &self.rules, &self.engine);
        let ends: Vec<i64> = self.windows.iter().map(|w| bucket_of(wm, w.step_ms)).collect();
        // The watermark moves up from (newest - lateness) to the newest
        // event time: up to one bucket end more than a tick's reach, and all
        // still exact (`end` is the newest bucket itself).
        self.evaluate_through(&ends, 1, out);
        self.continue_rounds(usize::MAX, out);
        if self.scope_share.is_some() {
            let last = last.map_or(wm, |l| l.max(wm));
            let lasts: Vec<i64> = self.windows.iter().map(|w| bucket_of(last, w.step_ms)).collect();
            let ahead: Vec<Option<(i64, i64)>> = (0..self.windows.len())
                .map(|w| (lasts[w] > ends[w]).then(|| ((ends[w] + 1).max(lasts[w] - self.readable[w] - 1), lasts[w])))
                .collect();
            self.share_spans(&ahead);
            self.evaluate_scopes(&ahead, out);
            if let Some(share) = self.scope_share.as_mut() {
                share.end = Some(lasts);
            }
        }
    }

    /// Drops shops with empty windows; returns how many.
    pub fn evict_idle(&mut self) -> usize {
        self.engine.evict_idle()
    }

    /// `reach`: bucket ends further back than a tick's (see `finish_at`).
    fn evaluate_through(&mut self, ends: &[i64], reach: i64, out: &mut Vec<Alert>) {
        // Per window: the bucket ends to evaluate at this tick.
        let spans: Vec<Option<(i64, i64)>> = (0..self.windows.len())
            .map(|w| {
                let end = ends[w];
                let from = match self.evaluated[w] {
                    Some(prev) if prev >= end => return None,
                    Some(prev) => (prev + 1).max(end - self.readable[w] - reach),
                    None => end - self.readable[w] - reach,
                };
                Some((from, end))
            })
            .collect();
        // No window completed a bucket since the last tick: no rule has
        // anything new to read (every evaluation below is keyed by a span),
        // so the pending shops wait for the next completed bucket instead of
        // being visited on every tick (a 1M-shop backlog made each tick
        // O(pending shops)).
        if spans.iter().all(Option::is_none) {
            return;
        }
        for (w, span) in spans.iter().enumerate() {
            if let Some((_, end)) = span {
                self.evaluated[w] = Some(*end);
            }
        }
        let before = out.len();
        for (w, span) in spans.iter().enumerate() {
            let Some((from, end)) = *span else { continue };
            // A round still in progress is finished first: each shop must
            // see this window's bucket ends in order.
            self.drain_rounds(Some(w), usize::MAX, out);
            self.engine.begin_round(w);
            self.rounds[w] = Some(Round { from, end, seen: HashSet::new() });
        }
        self.drain_rounds(None, self.visit_budget, out);
        self.share_spans(&spans);
        self.evaluate_scopes(&spans, out);
        self.gate.pass(out, before);
        self.count(out, before);
    }
}
