//! Category and platform rules when one process runs several workers. Pure.
//!
//! Each worker owns the shops of its partitions, so its category and
//! platform scopes hold only its share of them. A worker's [`Pipeline`] (in
//! [`Pipeline::with_scope_merge`] mode) does not evaluate those rules: at each
//! tick it hands over, as a [`ScopeShare`], what the rules would have read
//! (the window, a multi-window rule's long window, a spike rule's baseline),
//! for every category and bucket end it completed. Every read is a sum of
//! counters, so the shares add up to what one worker holding every shop
//! would have read.
//!
//! [`ScopeMerge`] sums the shares and evaluates bucket end `k` of window `w`
//! once every active worker has handed over `k` (the same rule a single
//! worker follows: the watermark is the minimum over its partitions, here
//! over all the process's partitions). Nothing is evaluated until every
//! worker has reported, and a worker is active while it has a watermark or
//! waits for a partition's first record ([`Pipeline::holds_merge`]), as
//! such a partition holds one pipeline's watermark back. A worker without
//! partitions, or whose partitions had nothing to read, holds nothing back.
//! Its own [`NotifyGate`] holds notifications while any worker catches up.
//!
//! A bucket end some active worker's reads skipped (its watermark jumped
//! further than a tick reaches back, as one pipeline's does then) is skipped
//! too, and counted: a sum without that worker's share could page falsely.
//! One before a worker's first reads (its first watermark came later) is
//! skipped without being counted: one pipeline, whose first watermark waits
//! for every partition, does not evaluate it either.
//!
//! [`Pipeline`]: super::Pipeline
//! [`Pipeline::with_scope_merge`]: super::Pipeline::with_scope_merge
//! [`Pipeline::holds_merge`]: super::Pipeline::holds_merge

use std::collections::{BTreeMap, HashSet};

use super::read::Read;
use crate::engine::WindowSpec;
use crate::event::Millis;
use crate::rules::{fingerprint, Alert, AlertStatus, NotifyGate, RuleBook, RuleSet, Scope};

/// What a rule read for one key (a category, or "" for the platform) at one
/// bucket end, on one worker.
#[derive(Clone, Debug)]
pub struct ScopeRead {
    /// By name: a reload may reach workers and the merge at different ticks.
    pub rule: Box<str>,
    pub scope: Scope,
    pub window: usize,
    pub k: i64,
    pub key: Box<str>,
    pub(super) read: Read,
}

/// One worker's category and platform reads of one tick.
#[derive(Clone, Debug, Default)]
pub struct ScopeShare {
    /// Per window: the last bucket end the tick completed, if it completed one.
    pub through: Vec<Option<i64>>,
    pub reads: Vec<ScopeRead>,
    /// (window, from, end): the bucket ends the reads cover, on every
    /// category the worker holds (one with none of a category's shops has
    /// no read for it, and covers it all the same).
    pub spans: Vec<(usize, i64, i64)>,
    /// Set by the worker's end of input ([`super::Pipeline::finish_at`]):
    /// per window, the process's last bucket end, which its reads go up to
    /// ([`ScopeMerge::finish`] evaluates that far).
    pub end: Option<Vec<i64>>,
}

#[derive(Clone, Debug, Default)]
struct Progress {
    /// Has said whether it is active: until every worker has, nothing is
    /// evaluated (one that starts a moment later must not be left out).
    reported: bool,
    /// Has a watermark: its partitions hold the merge back.
    active: bool,
    holding: bool,
    /// Per window: the last bucket end handed over.
    through: Vec<Option<i64>>,
    /// Per window: the first bucket end its reads covered since it became
    /// active (see [`ScopeMerge::evaluate_until`]).
    first: Vec<Option<i64>>,
    /// Per window: the last bucket end of its input, once it has ended.
    end: Option<Vec<i64>>,
}

/// One bucket end of one window waiting for every worker.
#[derive(Default)]
struct Due {
    /// Workers whose reads cover it.
    covered: HashSet<usize>,
    /// Sums of their reads by (rule, key).
    sums: BTreeMap<(Box<str>, Box<str>), Read>,
}

/// By (window, bucket end).
type Pending = BTreeMap<(usize, i64), Due>;

pub struct ScopeMerge {
    rules: RuleSet,
    windows: Vec<WindowSpec>,
    gate: NotifyGate,
    workers: Vec<Progress>,
    pending: Pending,
    /// Per window: the last bucket end evaluated.
    evaluated: Vec<Option<i64>>,
    /// "scope\0key" of every category (and the platform) read so far.
    known: HashSet<String>,
    /// Reads that came after their bucket end was evaluated.
    late_reads: u64,
    /// Bucket ends skipped because some active worker's reads skip them.
    skipped: u64,
    /// See [`ScopeMerge::hold_to_end`].
    to_end: bool,
    fired: u64,
    resolved: u64,
}

impl ScopeMerge {
    pub fn new(rules: impl Into<RuleBook>, windows: Vec<WindowSpec>, workers: usize) -> ScopeMerge {
        let n = windows.len();
        ScopeMerge {
            rules: RuleSet::new(rules),
            evaluated: vec![None; n],
            windows,
            gate: NotifyGate::default(),
            workers: vec![
                Progress { through: vec![None; n], first: vec![None; n], ..Progress::default() };
                workers.max(1)
            ],
            pending: BTreeMap::new(),
            known: HashSet::new(),
            late_reads: 0,
            skipped: 0,
            to_end: false,
            fired: 0,
            resolved: 0,
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn gate(&self) -> &NotifyGate {
        &self.gate
    }

    /// Puts new rules in force; see [`RuleSet::reload`].
    pub fn reload_rules(&mut self, rules: impl Into<RuleBook>) -> usize {
        self.rules.reload(rules)
    }

    /// Category and platform alerts read back from the alerts topic.
    pub fn restore_alerts(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        self.gate.restore(alerts.into_iter().filter(|a| a.scope != Scope::Shop.as_str()));
    }

    /// A catch-up run: once held, notifications stay held until
    /// [`ScopeMerge::finish`] has evaluated the last buckets (a restored
    /// alert only those keep firing must not be resolved first).
    pub fn hold_to_end(&mut self) {
        self.to_end = true;
    }

    /// Reads handed over after their bucket end was evaluated (a worker got
    /// its first watermark behind the others); they are not counted.
    pub fn late_reads(&self) -> u64 {
        self.late_reads
    }

    /// Bucket ends not evaluated because some active worker's reads skipped
    /// them (its watermark jumped further than a tick reaches back).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// (fired, resolved) notifications so far.
    pub fn transitions(&self) -> (u64, u64) {
        (self.fired, self.resolved)
    }

    /// The end, in ms, of the latest bucket evaluated in any window: the
    /// time restored alerts are resolved at when held alerts are released.
    fn evaluated_ms(&self) -> Millis {
        self.evaluated.iter().zip(&self.windows).filter_map(|(k, w)| k.map(|k| (k + 1) * w.step_ms)).max().unwrap_or(0)
    }

    /// Worker `worker` has (or no longer has) a watermark, and is (or is no
    /// longer) catching up on a backlog.
    pub fn status(&mut self, worker: usize, active: bool, holding: bool, out: &mut Vec<Alert>) {
        let Some(p) = self.workers.get_mut(worker) else { return };
        p.reported = true;
        p.active = active;
        p.holding = active && holding;
        if !active {
            p.through.iter_mut().chain(&mut p.first).for_each(|t| *t = None);
        }
        self.evaluate(out);
        self.update_hold(out);
    }

    /// Adds worker `worker`'s reads of one tick and evaluates every bucket
    /// end all active workers have now handed over.
    pub fn offer(&mut self, worker: usize, share: ScopeShare, out: &mut Vec<Alert>) {
        let Some(p) = self.workers.get_mut(worker) else { return };
        p.reported = true;
        p.active = true;
        if share.end.is_some() {
            p.end = share.end;
        }
        for (w, t) in share.through.iter().enumerate().take(p.through.len()) {
            if let Some(t) = *t {
                p.through[w] = Some(p.through[w].map_or(t, |old| old.max(t)));
            }
        }
        let evaluated = |w: usize, k: i64| self.evaluated.get(w).copied().flatten().is_some_and(|e| k <= e);
        for &(w, from, end) in &share.spans {
            if let Some(first) = p.first.get_mut(w) {
                *first = Some(first.map_or(from, |f| f.min(from)));
            }
            for k in from..=end {
                if !evaluated(w, k) {
                    self.pending.entry((w, k)).or_default().covered.insert(worker);
                }
            }
        }
        for r in share.reads {
            if evaluated(r.window, r.k) {
                self.late_reads += 1;
                continue;
            }
            self.known.insert(format!("{}\0{}", r.scope.as_str(), r.key));
            let sums = &mut self.pending.entry((r.window, r.k)).or_default().sums;
            match sums.get_mut(&(r.rule.clone(), r.key.clone())) {
                Some(sum) => sum.add(&r.read),
                None => {
                    sums.insert((r.rule, r.key), r.read);
                }
            }
        }
        self.evaluate(out);
    }

    /// Per window: the last bucket end every active worker has handed over.
    fn ready_through(&self, w: usize) -> Option<i64> {
        if !self.workers.iter().all(|p| p.reported) {
            return None;
        }
        let mut active = self.workers.iter().filter(|p| p.active).peekable();
        active.peek()?;
        active.map(|p| p.through[w]).min().flatten()
    }

    fn evaluate(&mut self, out: &mut Vec<Alert>) {
        let ready: Vec<Option<i64>> = (0..self.windows.len()).map(|w| self.ready_through(w)).collect();
        self.evaluate_until(&ready, out);
    }

    /// End of input (a catch-up run whose workers have all finished):
    /// evaluates every bucket end up to the last one of any worker's input,
    /// as one worker reading every partition would at its end.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        let last: Vec<Option<i64>> = (0..self.windows.len())
            .map(|w| {
                let ends = self.workers.iter().filter_map(|p| p.end.as_ref().map(|e| e[w]).or(p.through[w]));
                ends.max()
            })
            .collect();
        self.evaluate_until(&last, out);
        self.pending.clear();
        for p in &mut self.workers {
            p.holding = false;
        }
        self.to_end = false;
        self.update_hold(out);
    }

    fn evaluate_until(&mut self, ready: &[Option<i64>], out: &mut Vec<Alert>) {
        let before = out.len();
        let due: Vec<(usize, i64)> =
            self.pending.keys().copied().filter(|&(w, k)| ready[w].is_some_and(|r| k <= r)).collect();
        // Bucket order across windows does not matter (rule state is per
        // rule and key); within a window it is ascending.
        // A worker whose input has ended read up to the last bucket end.
        let required: Vec<usize> =
            (0..self.workers.len()).filter(|&i| self.workers[i].active || self.workers[i].end.is_some()).collect();
        for (w, k) in due {
            let Some(due) = self.pending.remove(&(w, k)) else { continue };
            self.evaluated[w] = Some(self.evaluated[w].map_or(k, |e| e.max(k)));
            let mut missing = required.iter().filter(|&i| !due.covered.contains(i)).peekable();
            if missing.peek().is_some() {
                // Before a worker's first reads (its first watermark came
                // after that bucket end, as a partition heard from late
                // holds one pipeline's first watermark back), a bucket end
                // is one that pipeline would not have evaluated either. After
                // them, the worker jumped over it: counted.
                if !missing.all(|&i| self.workers[i].first[w].is_some_and(|f| k < f)) {
                    self.skipped += 1;
                }
                continue;
            }
            let end_ms = (k + 1) * self.windows[w].step_ms;
            for ((rule, key), read) in due.sums {
                let Some(r) = self.rules.rules().iter().position(|x| *x.name == *rule && x.window == w) else {
                    continue; // removed by a reload
                };
                if let Some(a) = self.rules.evaluate(r, &key, &key, &read.inputs(), end_ms) {
                    out.push(a);
                }
            }
        }
        self.gate.pass(out, before);
        self.count(&out[before..]);
    }

    fn count(&mut self, alerts: &[Alert]) {
        for a in alerts {
            match a.status {
                AlertStatus::Firing => self.fired += 1,
                AlertStatus::Resolved => self.resolved += 1,
            }
        }
    }

    /// Holds notifications while any active worker catches up; releases
    /// them when none does.
    fn update_hold(&mut self, out: &mut Vec<Alert>) {
        let holding = self.workers.iter().any(|p| p.holding) || (self.to_end && self.gate.is_holding());
        match (holding, self.gate.is_holding()) {
            (true, false) => self.gate.hold(),
            (false, true) => {
                let rules = &self.rules;
                let active: HashSet<String> = rules
                    .active()
                    .map(|(r, key)| fingerprint(&rules.rules()[r].name, rules.rules()[r].scope.as_str(), key))
                    .collect();
                let known = |a: &Alert| self.known.contains(&format!("{}\0{}", a.scope, a.category));
                let before = out.len();
                self.gate.release(self.evaluated_ms(), known, |fp| active.contains(fp), out);
                self.count(&out[before..]);
            }
            _ => {}
        }
    }
}
