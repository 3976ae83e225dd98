//! The shop rounds of a [`Pipeline`]: which shops each window's bucket end
//! visits (the pending lists, and their visit floors), and what a visit
//! does (the window's shop rules, the top-K), a budget of shops at a time.
//! Shops with an alert pending or firing that a round did not visit are
//! evaluated when it ends.

use std::collections::HashSet;

use super::read::Read;
use super::Pipeline;
use crate::engine::window::bucket_of;
use crate::engine::VisitFloor;
use crate::rules::{Alert, Scope};

/// One window's evaluation of its pending shops at the bucket ends
/// `from..=end` (see `engine/pending.rs`).
pub(super) struct Round {
    pub(super) from: i64,
    pub(super) end: i64,
    /// Shops visited whose alert of this window's shop rules is active
    /// after the visit (for `evaluate_unseen`, which evaluates the active
    /// ones not visited). Only those: a set of every shop visited cost an
    /// allocation a visit whenever any alert was active anywhere.
    pub(super) seen: HashSet<Box<str>>,
}

impl Pipeline {
    /// Pending lists for the windows whose shops are evaluated: those of
    /// shop rules, and every window when the top-K is on. A window nothing
    /// reads per shop would otherwise revisit every shop folded into at each
    /// of its bucket ends for nothing.
    ///
    /// Each list takes only the shops that may matter to its readers (the
    /// engine's visit floors): a rule has nothing to do for a shop without
    /// its volume, unless the shop has an alert pending or firing, which
    /// [`Pipeline::evaluate_unseen`] evaluates anyway.
    pub(super) fn track_pending(&mut self) {
        let mut mask = 0u32;
        let mut floors: Vec<Option<VisitFloor>> = vec![None; self.windows.len()];
        let mut floor_of = |w: usize, f: VisitFloor| floors[w] = Some(floors[w].map_or(f, |g| g.or(f)));
        for rule in self.rules.rules().iter().filter(|r| r.scope == Scope::Shop) {
            mask |= 1 << rule.window;
            floor_of(rule.window, rule.visit_floor());
        }
        if self.topk.enabled() {
            mask |= u32::MAX;
            match self.topk.visit_floor() {
                Some(f) => (0..self.windows.len()).for_each(|w| floor_of(w, f)),
                None => floors.iter_mut().for_each(|f| *f = None),
            }
        }
        self.engine.track_pending(mask);
        self.engine.set_visit_floors(if self.visit_floors { floors } else { Vec::new() });
    }

    /// Visits every shop folded into at each bucket end of a window its
    /// rules or top-K read, without the visit floors (`track_pending`):
    /// what the floors must never change, for tests and comparisons.
    pub fn without_visit_floors(mut self) -> Pipeline {
        self.visit_floors = false;
        self.track_pending();
        self
    }

    /// Goes on with the rounds in progress, visiting at most the visit
    /// budget of shops (see [`Pipeline::with_visit_budget`]); the worker
    /// calls this between batches of records. Returns the shops left.
    pub fn work(&mut self, out: &mut Vec<Alert>) -> usize {
        self.continue_rounds(self.visit_budget, out)
    }

    /// [`Pipeline::drain_rounds`] over every window, with the alerts it
    /// emits passed through the gate and counted; returns the shops left.
    pub(super) fn continue_rounds(&mut self, budget: usize, out: &mut Vec<Alert>) -> usize {
        let before = out.len();
        self.drain_rounds(None, budget, out);
        self.gate.pass(out, before);
        self.count(out, before);
        (0..self.windows.len()).map(|w| self.engine.round_len(w)).sum()
    }

    /// Visits up to `budget` shops of the rounds in progress (of window
    /// `only`, or of every window), and closes each round that empties.
    pub(super) fn drain_rounds(&mut self, only: Option<usize>, mut budget: usize, out: &mut Vec<Alert>) {
        for w in 0..self.windows.len() {
            if only.is_some_and(|o| o != w) {
                continue;
            }
            let Some(round) = self.rounds[w].as_mut() else { continue };
            let (from, end) = (round.from, round.end);
            let seen = &mut round.seen;
            let (windows, phase_baselines) = (&self.windows, &self.phase_baselines);
            let rules = &mut self.rules;
            let topk = &mut self.topk;
            let track_seen = rules.active_count() > 0;
            let step_ms = windows[w].step_ms;
            let mut visited = 0;
            let mut read = Read::default();
            // Only the shops folded into since this window last read their
            // newest bucket: its rules read nothing else new.
            let left = self.engine.drain_round(w, budget, |shop_id, category, shop, cat, newest| {
                visited += 1;
                let mut active = false;
                // The bucket of window `w` that `read` holds (the shop's
                // rules share the window: one read serves them, and top-K).
                let mut read_k = None;
                for r in 0..rules.rules().len() {
                    let rule = &rules.rules()[r];
                    if rule.window != w || rule.scope != Scope::Shop {
                        continue;
                    }
                    let mut is_active = rules.is_active(r, shop_id);
                    for k in from..=end {
                        let rule = &rules.rules()[r];
                        if read_k != Some(k) {
                            read.read_current(rule, Some(shop), k);
                            read_k = Some(k);
                        }
                        // Most shops' windows lack the rule's volume: with no
                        // alert state, their evaluation would change nothing,
                        // and the long window, baseline and peers go unread.
                        if !is_active && !read.can_breach(rule) {
                            continue;
                        }
                        read.read_rest(rule, shop_id, Some(shop), Some(cat), (windows, phase_baselines), k);
                        let end_ms = (k + 1) * step_ms;
                        if let Some(a) = rules.evaluate(r, shop_id, category, &read.inputs(), end_ms) {
                            out.push(a);
                        }
                        is_active = rules.is_active(r, shop_id);
                    }
                    active = active || (track_seen && is_active);
                }
                if read_k == Some(end) {
                    topk.offer_read(shop_id, read.current(), w);
                } else {
                    topk.offer(shop_id, shop, w, end);
                }
                if active {
                    seen.insert(shop_id.into());
                }
                // Pending for this window until it has evaluated the newest bucket.
                bucket_of(newest, step_ms) > end
            });
            budget = budget.saturating_sub(visited);
            if left == 0 {
                if let Some(round) = self.rounds[w].take() {
                    self.evaluate_unseen(w, &round, out);
                }
            }
            if budget == 0 {
                break;
            }
        }
    }

    /// Pending and firing alerts of window `w`'s shop rules for shops its
    /// round did not visit (no new events): their windows drain, and `for`
    /// / `keep_firing_for` run out.
    fn evaluate_unseen(&mut self, w: usize, round: &Round, out: &mut Vec<Alert>) {
        let rules = &self.rules;
        let firing: Vec<(usize, Box<str>)> = rules
            .active()
            .filter(|(r, s)| {
                let rule = &rules.rules()[*r];
                rule.scope == Scope::Shop && rule.window == w && !round.seen.contains(*s)
            })
            .map(|(r, s)| (r, s.into()))
            .collect();
        for (r, shop_id) in firing {
            let shop = self.engine.shop(&shop_id);
            let category = self.engine.shop_category(&shop_id).unwrap_or_default().to_string();
            let cat = self.engine.category(&category);
            let mut read = Read::default();
            for k in round.from..=round.end {
                let rule = &self.rules.rules()[r];
                read.read_at(rule, &shop_id, shop, cat, (&self.windows, &self.phase_baselines), k);
                let end_ms = (k + 1) * self.windows[w].step_ms;
                if let Some(a) = self.rules.evaluate(r, &shop_id, &category, &read.inputs(), end_ms) {
                    out.push(a);
                }
            }
        }
    }
}
