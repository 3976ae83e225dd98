//! Alert rules and their lifecycle. Pure: callers hand in window counts and
//! the event time of the window end; rules hand back [`Alert`] transitions.
//!
//! * [`rule`]: one rule and how it judges a window (ratio, multi-window, spike).
//! * [`calendar`]: campaign phases that mute rules or change thresholds.
//! * [`notify`]: the labels and annotations of an alert.
//! * [`gate`]: holds notifications during catch-up, marks repeats after a restart.
//! * [`stats`]: the Wilson score lower bound.
//! * [`alert`]: the notification every sink receives, and fingerprints.
//!
//! A rule breaches for a key (shop, category or platform) when, in its
//! window, the denominator and the numerator both reach their volume floors
//! and the Wilson lower bound of the rate exceeds the threshold. The
//! lifecycle per (rule, key) is pending (`for`) -> firing -> resolved (after
//! `keep_firing_for`). Only pending and firing pairs are kept in memory.

pub mod alert;
pub mod calendar;
pub mod gate;
pub mod metric;
mod notify;
pub mod rule;
pub mod stats;

use hashbrown::{Equivalent, HashMap};
use rustc_hash::FxBuildHasher;

pub use alert::{fingerprint, Alert, AlertStatus, Severity};
pub use calendar::{Calendar, Phase, Verdict};
pub use gate::NotifyGate;
pub use metric::Metric;
pub use rule::{Confirm, Evaluation, Inputs, RateRule, Ratio, Spike};

use crate::event::Millis;

/// What a rule watches: each shop, each category, or the whole platform.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Shop,
    Category,
    Platform,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Shop => "shop",
            Scope::Category => "category",
            Scope::Platform => "platform",
        }
    }
}

/// The rules in force and the campaign calendar: what a rules file holds,
/// and what a reload swaps in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleBook {
    pub rules: Vec<RateRule>,
    pub calendar: Calendar,
}

impl From<Vec<RateRule>> for RuleBook {
    fn from(rules: Vec<RateRule>) -> RuleBook {
        RuleBook { rules, calendar: Calendar::default() }
    }
}

/// Lifecycle of one (rule, key): absent (inactive) -> pending -> firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Breached since `since`, waiting out the rule's `for`.
    Pending { since: Millis },
    /// Notified; `last_breach` is the newest window end that breached.
    Firing { starts_at: Millis, last_breach: Millis },
}

/// (rule, key) of an active pair, borrowed: the key of a lookup, so that
/// evaluating a key with nothing pending (nearly every evaluation) does not
/// allocate a copy of it. Hashes as the owned `(usize, Box<str>)` does.
#[derive(Hash)]
struct KeyRef<'a>(usize, &'a str);

impl Equivalent<(usize, Box<str>)> for KeyRef<'_> {
    fn equivalent(&self, owned: &(usize, Box<str>)) -> bool {
        self.0 == owned.0 && self.1 == &*owned.1
    }
}

/// The rules in force and the lifecycle state of every pending or firing
/// (rule, key). Inactive pairs are not stored.
pub struct RuleSet {
    rules: Vec<RateRule>,
    calendar: Calendar,
    active: HashMap<(usize, Box<str>), State, FxBuildHasher>,
    /// Per rule: evaluations that breached but were muted by the calendar.
    muted: Vec<u64>,
}

impl RuleSet {
    pub fn new(book: impl Into<RuleBook>) -> RuleSet {
        let book = book.into();
        let muted = vec![0; book.rules.len()];
        RuleSet { rules: book.rules, calendar: book.calendar, active: HashMap::default(), muted }
    }

    pub fn rules(&self) -> &[RateRule] {
        &self.rules
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Per rule (same order as [`rules`](Self::rules)): breaches the
    /// calendar muted so far.
    pub fn muted(&self) -> &[u64] {
        &self.muted
    }

    /// Puts `book` in force. Pending and firing alerts of rules that keep
    /// their name and scope carry over (no repeat page); those of removed
    /// rules are forgotten. Returns how many were forgotten.
    pub fn reload(&mut self, book: impl Into<RuleBook>) -> usize {
        let RuleBook { rules, calendar } = book.into();
        let new_index = |old: &RateRule| rules.iter().position(|r| r.name == old.name && r.scope == old.scope);
        let map: Vec<Option<usize>> = self.rules.iter().map(new_index).collect();
        let before = self.active.len();
        self.active = std::mem::take(&mut self.active)
            .into_iter()
            .filter_map(|((r, key), state)| map[r].map(|n| ((n, key), state)))
            .collect();
        let mut muted = vec![0; rules.len()];
        for (old, new) in map.iter().enumerate() {
            if let Some(n) = new {
                muted[*n] = self.muted[old];
            }
        }
        self.muted = muted;
        self.rules = rules;
        self.calendar = calendar;
        before - self.active.len()
    }

    /// (rule index, key) of every pending or firing alert: they must be
    /// evaluated as time passes even when the key sees no events.
    pub fn active(&self) -> impl Iterator<Item = (usize, &str)> {
        self.active.keys().map(|(r, s)| (*r, &**s))
    }

    /// (rule index, key) of every firing alert.
    pub fn firing(&self) -> impl Iterator<Item = (usize, &str)> {
        self.active.iter().filter(|(_, s)| matches!(s, State::Firing { .. })).map(|((r, k), _)| (*r, &**k))
    }

    /// Per rule (same order as [`rules`](Self::rules)): (firing, pending) keys.
    pub fn counts_by_rule(&self) -> Vec<(u64, u64)> {
        let mut counts = vec![(0, 0); self.rules.len()];
        for ((r, _), state) in &self.active {
            match state {
                State::Firing { .. } => counts[*r].0 += 1,
                State::Pending { .. } => counts[*r].1 += 1,
            }
        }
        counts
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Whether rule `r` is pending or firing for `key`.
    pub fn is_active(&self, r: usize, key: &str) -> bool {
        self.active.contains_key(&KeyRef(r, key))
    }

    pub fn firing_count(&self) -> usize {
        self.firing().count()
    }

    pub fn pending_count(&self) -> usize {
        self.active.len() - self.firing_count()
    }

    /// Evaluates rule `r` for one key of its scope (a shop id, a category
    /// name, or "" for the platform) at the window ending at `window_end`;
    /// returns the transition, if any.
    pub fn evaluate(
        &mut self,
        r: usize,
        key: &str,
        category: &str,
        inputs: &Inputs<'_>,
        window_end: Millis,
    ) -> Option<Alert> {
        let RuleSet { rules, calendar, active, muted } = self;
        let rule = &rules[r];
        let (threshold, phase, is_muted) = match calendar.verdict(&rule.name, window_end) {
            Verdict::Normal { phase } => (rule.threshold, phase, false),
            Verdict::Muted { phase } => (rule.threshold, Some(phase), true),
            Verdict::Threshold { phase, threshold } => (threshold, Some(phase), false),
        };
        let mut eval = rule.evaluate(inputs, threshold);
        let confirm = rule.evaluate_confirm(inputs.confirm);
        let (for_ms, keep_ms) = (rule.for_ms, rule.keep_firing_for_ms);
        let state_key = KeyRef(r, key);
        let state = active.get(&state_key).copied();
        // Firing needs the long window too; staying firing only the short one.
        if !matches!(state, Some(State::Firing { .. })) {
            eval.breached &= confirm.is_none_or(|e| e.breached);
        }
        if is_muted && eval.breached {
            muted[r] += 1;
            eval.breached = false;
        }
        let fire = State::Firing { starts_at: window_end, last_breach: window_end };
        let alert = |starts_at, status| {
            let n = notify::Notice { rule, key, category, eval: &eval, confirm: confirm.as_ref() };
            n.alert(starts_at, window_end, status, phase)
        };
        // The key is copied only when a pair becomes active.
        let mut set = |state: State| match active.get_mut(&state_key) {
            Some(s) => *s = state,
            None => {
                active.insert((r, key.into()), state);
            }
        };
        match (state, eval.breached) {
            (None, false) => None,
            (None, true) if for_ms > 0 => {
                set(State::Pending { since: window_end });
                None
            }
            (Some(State::Pending { since }), true) if window_end - since < for_ms => None,
            (None, true) | (Some(State::Pending { .. }), true) => {
                set(fire);
                Some(alert(window_end, AlertStatus::Firing))
            }
            (Some(State::Pending { .. }), false) => {
                active.remove(&state_key);
                None
            }
            (Some(State::Firing { starts_at, .. }), true) => {
                set(State::Firing { starts_at, last_breach: window_end });
                None
            }
            (Some(State::Firing { last_breach, .. }), false) if window_end - last_breach < keep_ms => None,
            (Some(State::Firing { starts_at, .. }), false) => {
                active.remove(&state_key);
                Some(alert(starts_at, AlertStatus::Resolved))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Counts;

    fn rule() -> RateRule {
        RateRule::new("refund_rate_5m", Metric::RefundRate, 0, "5m", 0.10)
    }

    fn counts(orders: u64, refunds: u64) -> Counts {
        let mut c = Counts::default();
        c.add_at(crate::engine::Field::OrdersPaid as usize, orders);
        c.add_at(crate::engine::Field::RefundsRequested as usize, refunds);
        c
    }

    #[test]
    fn volume_floor_and_bound_gate_firing() {
        let r = rule();
        assert!(!r.evaluate(&Inputs::of(&counts(4, 3)), r.threshold).breached, "3 of 4 is below the volume floor");
        assert!(!r.evaluate(&Inputs::of(&counts(100, 4)), r.threshold).breached, "too few refunds");
        assert!(!r.evaluate(&Inputs::of(&counts(100, 14)), r.threshold).breached, "14% raw but bound below 10%");
        assert!(r.evaluate(&Inputs::of(&counts(100, 25)), r.threshold).breached);
    }

    #[test]
    fn fires_once_then_resolves() {
        let mut set = RuleSet::new(vec![rule()]);
        let a = set.evaluate(0, "s1", "apparel", &Inputs::of(&counts(100, 40)), 1_000).expect("fires");
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!((a.numerator, a.denominator), (40, 100));
        assert_eq!(a.labels["shop_id"], "s1");
        assert!(set.evaluate(0, "s1", "apparel", &Inputs::of(&counts(120, 45)), 2_000).is_none(), "no re-fire");
        let r = set.evaluate(0, "s1", "apparel", &Inputs::of(&counts(100, 2)), 3_000).expect("resolves");
        assert_eq!(r.status, AlertStatus::Resolved);
        assert_eq!((r.starts_at, r.ends_at), (1_000, Some(3_000)));
        assert_eq!(r.fingerprint, a.fingerprint);
        assert_eq!(set.firing_count(), 0);
    }

    #[test]
    fn for_and_keep_firing_for_hold_back_and_debounce() {
        let mut set = RuleSet::new(vec![RateRule { for_ms: 120_000, keep_firing_for_ms: 120_000, ..rule() }]);
        let (bad, good) = (counts(100, 40), counts(100, 2));
        let at = |set: &mut RuleSet, t: i64, c: &Counts| set.evaluate(0, "s1", "toys", &Inputs::of(c), t * 60_000);
        // A one-minute blip never fires.
        assert!(at(&mut set, 1, &bad).is_none());
        assert_eq!(set.pending_count(), 1);
        assert!(at(&mut set, 2, &good).is_none());
        assert_eq!(set.active_count(), 0, "pending dropped silently");
        // Two minutes of breach: fires at the end of the second.
        assert!(at(&mut set, 3, &bad).is_none());
        assert!(at(&mut set, 4, &bad).is_none());
        let fired = at(&mut set, 5, &bad).expect("fires after `for`");
        assert_eq!((fired.status, fired.starts_at), (AlertStatus::Firing, 5 * 60_000));
        // A short dip does not resolve it (keep_firing_for).
        assert!(at(&mut set, 6, &good).is_none());
        assert!(at(&mut set, 7, &bad).is_none());
        assert!(at(&mut set, 8, &good).is_none());
        let resolved = at(&mut set, 9, &good).expect("resolves 2 minutes after the last breach at 7");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!((resolved.starts_at, resolved.ends_at), (5 * 60_000, Some(9 * 60_000)));
        assert_eq!(set.active_count(), 0);
    }

    #[test]
    fn multi_window_fires_on_both_and_resolves_on_the_short_one() {
        let confirm = Confirm { window: 1, window_name: "1h".into(), threshold: 0.05 };
        let mut set = RuleSet::new(vec![RateRule { confirm: Some(confirm), ..rule() }]);
        let (bad, good) = (counts(100, 40), counts(100, 2));
        let long_low = counts(1_000, 45);
        let long_high = counts(1_000, 120);
        assert!(
            set.evaluate(0, "s", "c", &Inputs { confirm: Some(&long_low), ..Inputs::of(&bad) }, 1).is_none(),
            "the long window is not over 5%"
        );
        assert!(set.evaluate(0, "s", "c", &Inputs::of(&bad), 2).is_none(), "no long counts, no page");
        let fired = set
            .evaluate(0, "s", "c", &Inputs { confirm: Some(&long_high), ..Inputs::of(&bad) }, 3)
            .expect("both windows breach");
        assert!(fired.annotations["confirm_window"].starts_with("1h: 120 of 1000"), "{:?}", fired.annotations);
        assert!(
            set.evaluate(0, "s", "c", &Inputs { confirm: Some(&long_low), ..Inputs::of(&bad) }, 4).is_none(),
            "stays firing on the short window"
        );
        let resolved = set
            .evaluate(0, "s", "c", &Inputs { confirm: Some(&long_high), ..Inputs::of(&good) }, 5)
            .expect("short window recovered");
        assert_eq!(resolved.status, AlertStatus::Resolved);
    }

    #[test]
    fn reload_keeps_state_of_kept_rules_and_forgets_removed_ones() {
        let other = RateRule { name: "other".into(), ..rule() };
        let mut set = RuleSet::new(vec![rule(), other.clone()]);
        assert!(set.evaluate(0, "s", "c", &Inputs::of(&counts(100, 40)), 1).is_some());
        assert!(set.evaluate(1, "s", "c", &Inputs::of(&counts(100, 40)), 1).is_some());
        // Swap order, drop nothing: no repeat page.
        assert_eq!(set.reload(vec![other.clone(), rule()]), 0);
        assert!(set.evaluate(1, "s", "c", &Inputs::of(&counts(100, 40)), 2).is_none(), "still firing, not re-sent");
        // Remove "other": its state goes.
        assert_eq!(set.reload(vec![RateRule { threshold: 0.2, ..rule() }]), 1);
        assert_eq!(set.firing_count(), 1);
    }

    fn spike_rule() -> RateRule {
        let spike = Spike {
            baseline: Some((2, "24h".into())),
            baseline_phase: None,
            baseline_ratio: 3.0,
            require_baseline: false,
            category_ratio: Some(2.0),
        };
        RateRule { name: "spike".into(), threshold: 0.02, spike: Some(spike), ..rule() }
    }

    #[test]
    fn spike_compares_with_baseline_and_category() {
        let r = spike_rule();
        let now = counts(200, 30); // 15%, bound about 10.7%
        let quiet_past = (40, 2_000); // 2%: 3x is 6%
        let quiet_peers = (300, 10_000); // 3%: 2x is 6%
        let e = r.evaluate(&Inputs { baseline: Some(quiet_past), peers: Some(quiet_peers), ..Inputs::of(&now) }, 0.02);
        assert!(e.breached, "{e:?}");
        assert!((e.threshold - 0.06).abs() < 1e-9, "largest of 2%, 3x2%, 2x3%: {e:?}");
        assert_eq!((e.baseline_rate, e.peer_rate), (Some(0.02), Some(0.03)));
        // The shop always runs at 8%: 15% now is under 3x its own baseline.
        let e = r.evaluate(&Inputs { baseline: Some((160, 2_000)), ..Inputs::of(&now) }, 0.02);
        assert!(!e.breached && (e.threshold - 0.24).abs() < 1e-9, "{e:?}");
        // The whole category is at 10% (a platform-wide problem, not this shop).
        let e = r.evaluate(&Inputs { peers: Some((1_000, 10_000)), ..Inputs::of(&now) }, 0.02);
        assert!(!e.breached && (e.threshold - 0.20).abs() < 1e-9, "{e:?}");
        // A baseline under the volume floor is not used; the floor still is.
        let e = r.evaluate(&Inputs { baseline: Some((0, 10)), ..Inputs::of(&now) }, 0.2);
        assert_eq!(e.baseline_rate, None);
        assert!(!e.breached, "the 20% floor holds: {e:?}");
        // Volume floor applies to spike rules too.
        assert!(!r.evaluate(&Inputs::of(&counts(10, 5)), 0.02).breached);
        // With require_baseline, no baseline means no page.
        let strict =
            RateRule { spike: Some(Spike { require_baseline: true, ..r.spike.clone().unwrap() }), ..r.clone() };
        assert!(r.evaluate(&Inputs::of(&now), 0.02).breached);
        assert!(!strict.evaluate(&Inputs::of(&now), 0.02).breached);
        assert!(strict.evaluate(&Inputs { baseline: Some(quiet_past), ..Inputs::of(&now) }, 0.02).breached);
    }

    #[test]
    fn spike_alert_carries_the_comparison() {
        let mut set = RuleSet::new(vec![spike_rule()]);
        let (now, past) = (counts(200, 30), (40, 2_000));
        let a = set.evaluate(0, "s", "c", &Inputs { baseline: Some(past), ..Inputs::of(&now) }, 1).expect("fires");
        assert_eq!(a.baseline_rate, Some(0.02));
        assert_eq!(a.annotations["baseline_rate"], "0.020000");
        assert_eq!(a.annotations["numerator"], "30");
        assert!(a.annotations["description"].contains("baseline rate was 2.00%"), "{:?}", a.annotations);
    }

    #[test]
    fn calendar_mutes_and_changes_thresholds_by_event_time() {
        let mut deposit =
            Phase { name: "deposit".into(), start: 0, end: 100, mute: vec![], thresholds: Default::default() };
        deposit.mute.push("refund_rate_5m".into());
        let mut sale = Phase { name: "main_sale".into(), start: 100, end: 200, ..deposit.clone() };
        sale.mute.clear();
        sale.thresholds.insert("refund_rate_5m".into(), 0.5);
        let book = RuleBook { rules: vec![rule()], calendar: Calendar::new(vec![deposit, sale]) };
        let mut set = RuleSet::new(book);
        let bad = counts(100, 40);
        assert!(set.evaluate(0, "s", "c", &Inputs::of(&bad), 50).is_none(), "muted in deposit");
        assert_eq!(set.muted(), &[1]);
        assert!(set.evaluate(0, "s", "c", &Inputs::of(&bad), 150).is_none(), "40% is under the sale's 50%");
        let a = set.evaluate(0, "s", "c", &Inputs::of(&bad), 250).expect("after the calendar: the rule's 10%");
        assert_eq!(a.phase, None);
        assert_eq!(set.muted(), &[1]);
    }

    #[test]
    fn rule_labels_and_annotations_are_added_and_numbers_annotated() {
        let mut r = rule();
        r.labels.insert("team".into(), "after-sales".into());
        r.annotations.insert("dashboard".into(), "https://grafana/d/pg".into());
        let mut set = RuleSet::new(vec![r]);
        let a = set.evaluate(0, "s1", "toys", &Inputs::of(&counts(100, 40)), 60_000).expect("fires");
        assert_eq!(a.labels["team"], "after-sales");
        assert_eq!(a.labels["alertname"], "refund_rate_5m");
        assert_eq!(a.annotations["dashboard"], "https://grafana/d/pg");
        assert_eq!(a.annotations["denominator"], "100");
        assert_eq!(a.annotations["window"], "5m");
        let back: Alert = serde_json::from_str(&serde_json::to_string(&a).unwrap()).expect("round trip");
        assert_eq!(back, a);
    }
}
