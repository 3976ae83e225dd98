//! Alert rules and their lifecycle. Pure: callers hand in window counts and
//! the event time of the window end; rules hand back [`Alert`] transitions.
//!
//! * [`stats`]: the Wilson score lower bound.
//! * [`alert`]: the notification every sink receives, and fingerprints.
//!
//! A rate rule fires for a shop when, in its window, the denominator and the
//! numerator both reach their volume floors and the Wilson lower bound of the
//! rate exceeds the threshold. It resolves when that no longer holds. Only
//! firing (rule, shop) pairs are kept in memory.

pub mod alert;
pub mod metric;
pub mod stats;

use std::collections::{BTreeMap, HashMap};

pub use alert::{fingerprint, Alert, AlertStatus, Severity};
pub use metric::Metric;

use crate::engine::Counts;
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

/// A rate rule, resolved against the engine's windows.
#[derive(Clone, Debug, PartialEq)]
pub struct RateRule {
    pub name: String,
    pub scope: Scope,
    pub metric: Metric,
    /// Index into the engine's windows.
    pub window: usize,
    pub window_name: String,
    pub threshold: f64,
    pub min_denominator: u64,
    pub min_numerator: u64,
    /// One-sided z of the configured confidence.
    pub z: f64,
    pub severity: Severity,
    pub runbook_url: Option<String>,
    /// The condition must hold this long (event time) before the alert fires.
    pub for_ms: i64,
    /// A firing alert stays firing this long after the condition stops
    /// holding (against flapping).
    pub keep_firing_for_ms: i64,
    /// Multi-window rule: a longer window that must breach too before the
    /// alert fires (SRE-workbook style); it resolves on the short window alone.
    pub confirm: Option<Confirm>,
}

/// The long window of a multi-window rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm {
    /// Index into the engine's windows.
    pub window: usize,
    pub window_name: String,
    pub threshold: f64,
}

/// The numbers a rule computed at one window end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub numerator: u64,
    pub denominator: u64,
    pub rate: f64,
    pub bound: f64,
    pub breached: bool,
}

impl RateRule {
    /// A shop-scope rule with the default volume floor (30 and 5), one-sided
    /// 95% confidence, severity page, no `for`, no confirming window.
    pub fn new(name: &str, metric: Metric, window: usize, window_name: &str, threshold: f64) -> RateRule {
        RateRule {
            name: name.to_string(),
            scope: Scope::Shop,
            metric,
            window,
            window_name: window_name.to_string(),
            threshold,
            min_denominator: 30,
            min_numerator: 5,
            z: stats::z_for_confidence(0.95),
            severity: Severity::Page,
            runbook_url: None,
            for_ms: 0,
            keep_firing_for_ms: 0,
            confirm: None,
        }
    }

    /// Evaluates the rule's own (short) window.
    pub fn evaluate(&self, c: &Counts) -> Evaluation {
        self.evaluate_at(c, self.threshold)
    }

    fn evaluate_at(&self, c: &Counts, threshold: f64) -> Evaluation {
        let (k, n) = self.metric.ratio(c);
        let rate = if n == 0 { 0.0 } else { k as f64 / n as f64 };
        let bound = stats::wilson_lower_bound(k, n, self.z);
        let breached = n >= self.min_denominator && k >= self.min_numerator && bound > threshold;
        Evaluation { numerator: k, denominator: n, rate, bound, breached }
    }

    /// Evaluates the confirming long window, if the rule has one.
    pub fn evaluate_confirm(&self, long: Option<&Counts>) -> Option<Evaluation> {
        let confirm = self.confirm.as_ref()?;
        Some(match long {
            Some(c) => self.evaluate_at(c, confirm.threshold),
            None => Evaluation { numerator: 0, denominator: 0, rate: 0.0, bound: 0.0, breached: false },
        })
    }
}

/// Lifecycle of one (rule, shop): absent (inactive) -> pending -> firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Breached since `since`, waiting out the rule's `for`.
    Pending { since: Millis },
    /// Notified; `last_breach` is the newest window end that breached.
    Firing { starts_at: Millis, last_breach: Millis },
}

/// The rules in force and the lifecycle state of every pending or firing
/// (rule, shop). Inactive pairs are not stored.
pub struct RuleSet {
    rules: Vec<RateRule>,
    active: HashMap<(usize, Box<str>), State>,
}

impl RuleSet {
    pub fn new(rules: Vec<RateRule>) -> RuleSet {
        RuleSet { rules, active: HashMap::new() }
    }

    pub fn rules(&self) -> &[RateRule] {
        &self.rules
    }

    /// Puts `rules` in force. Pending and firing alerts of rules that keep
    /// their name and scope carry over (no repeat page); those of removed
    /// rules are forgotten. Returns how many were forgotten.
    pub fn reload(&mut self, rules: Vec<RateRule>) -> usize {
        let new_index = |old: &RateRule| rules.iter().position(|r| r.name == old.name && r.scope == old.scope);
        let map: Vec<Option<usize>> = self.rules.iter().map(new_index).collect();
        let before = self.active.len();
        self.active = std::mem::take(&mut self.active)
            .into_iter()
            .filter_map(|((r, key), state)| map[r].map(|n| ((n, key), state)))
            .collect();
        self.rules = rules;
        before - self.active.len()
    }

    /// (rule index, shop id) of every pending or firing alert: they must be
    /// evaluated as time passes even when the shop sees no events.
    pub fn active(&self) -> impl Iterator<Item = (usize, &str)> {
        self.active.keys().map(|(r, s)| (*r, &**s))
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    pub fn firing_count(&self) -> usize {
        self.active.values().filter(|s| matches!(s, State::Firing { .. })).count()
    }

    pub fn pending_count(&self) -> usize {
        self.active.len() - self.firing_count()
    }

    /// Evaluates rule `r` for one key of its scope (a shop id, a category
    /// name, or "" for the platform) at the window ending at `window_end`
    /// (`c`), with the counts of its confirming long window (`long`) for a
    /// multi-window rule; returns the transition, if any.
    pub fn evaluate(
        &mut self,
        r: usize,
        shop_id: &str,
        category: &str,
        c: &Counts,
        long: Option<&Counts>,
        window_end: Millis,
    ) -> Option<Alert> {
        let rule = &self.rules[r];
        let mut eval = rule.evaluate(c);
        let confirm = rule.evaluate_confirm(long);
        let (for_ms, keep_ms) = (rule.for_ms, rule.keep_firing_for_ms);
        let key = (r, Box::<str>::from(shop_id));
        let state = self.active.get(&key).copied();
        // Firing needs the long window too; staying firing only the short one.
        if !matches!(state, Some(State::Firing { .. })) {
            eval.breached &= confirm.is_none_or(|e| e.breached);
        }
        let fire = State::Firing { starts_at: window_end, last_breach: window_end };
        let alert = |set: &Self, starts_at, status| {
            set.alert(r, shop_id, category, &eval, confirm.as_ref(), starts_at, window_end, status)
        };
        match (state, eval.breached) {
            (None, false) => None,
            (None, true) if for_ms > 0 => {
                self.active.insert(key, State::Pending { since: window_end });
                None
            }
            (Some(State::Pending { since }), true) if window_end - since < for_ms => None,
            (None, true) | (Some(State::Pending { .. }), true) => {
                self.active.insert(key, fire);
                Some(alert(self, window_end, AlertStatus::Firing))
            }
            (Some(State::Pending { .. }), false) => {
                self.active.remove(&key);
                None
            }
            (Some(State::Firing { starts_at, .. }), true) => {
                self.active.insert(key, State::Firing { starts_at, last_breach: window_end });
                None
            }
            (Some(State::Firing { last_breach, .. }), false) if window_end - last_breach < keep_ms => None,
            (Some(State::Firing { starts_at, .. }), false) => {
                self.active.remove(&key);
                Some(alert(self, starts_at, AlertStatus::Resolved))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        r: usize,
        key: &str,
        category: &str,
        e: &Evaluation,
        confirm: Option<&Evaluation>,
        starts_at: Millis,
        window_end: Millis,
        status: AlertStatus,
    ) -> Alert {
        let rule = &self.rules[r];
        let metric = rule.metric.name();
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), rule.name.clone());
        labels.insert("rule".to_string(), rule.name.clone());
        labels.insert("severity".to_string(), rule.severity.as_str().to_string());
        labels.insert("scope".to_string(), rule.scope.as_str().to_string());
        if rule.scope == Scope::Shop {
            labels.insert("shop_id".to_string(), key.to_string());
        }
        if !category.is_empty() {
            labels.insert("category".to_string(), category.to_string());
        }
        labels.insert("window".to_string(), rule.window_name.clone());
        let subject = match rule.scope {
            Scope::Shop => format!("shop {key}"),
            Scope::Category => format!("category {key}"),
            Scope::Platform => "the platform".to_string(),
        };
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "summary".to_string(),
            format!("{metric} of {subject} is {:.1}% over the last {}", e.rate * 100.0, rule.window_name),
        );
        annotations.insert("metric_definition".to_string(), rule.metric.description().to_string());
        annotations.insert(
            "description".to_string(),
            format!(
                "{} of {} ({:.2}%); Wilson lower bound {:.2}% is {} the {:.2}% threshold",
                e.numerator,
                e.denominator,
                e.rate * 100.0,
                e.bound * 100.0,
                if e.breached { "above" } else { "no longer above" },
                rule.threshold * 100.0
            ),
        );
        if let (Some(c), Some(spec)) = (confirm, &rule.confirm) {
            annotations.insert(
                "confirm_window".to_string(),
                format!(
                    "{}: {} of {} ({:.2}%); Wilson lower bound {:.2}% vs {:.2}%",
                    spec.window_name,
                    c.numerator,
                    c.denominator,
                    c.rate * 100.0,
                    c.bound * 100.0,
                    spec.threshold * 100.0
                ),
            );
        }
        if let Some(url) = &rule.runbook_url {
            annotations.insert("runbook_url".to_string(), url.clone());
        }
        Alert {
            fingerprint: fingerprint(&rule.name, rule.scope.as_str(), key),
            status,
            rule: rule.name.clone(),
            severity: rule.severity,
            scope: rule.scope.as_str(),
            shop_id: if rule.scope == Scope::Shop { key.to_string() } else { String::new() },
            category: category.to_string(),
            metric,
            window: rule.window_name.clone(),
            numerator: e.numerator,
            denominator: e.denominator,
            rate: e.rate,
            wilson_lower_bound: e.bound,
            threshold: rule.threshold,
            starts_at,
            ends_at: (status == AlertStatus::Resolved).then_some(window_end),
            window_end,
            labels,
            annotations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!r.evaluate(&counts(4, 3)).breached, "3 of 4 is below the volume floor");
        assert!(!r.evaluate(&counts(100, 4)).breached, "too few refunds");
        assert!(!r.evaluate(&counts(100, 14)).breached, "14% raw but bound below 10%");
        assert!(r.evaluate(&counts(100, 25)).breached);
    }

    #[test]
    fn fires_once_then_resolves() {
        let mut set = RuleSet::new(vec![rule()]);
        let a = set.evaluate(0, "s1", "apparel", &counts(100, 40), None, 1_000).expect("fires");
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!((a.numerator, a.denominator), (40, 100));
        assert_eq!(a.labels["shop_id"], "s1");
        assert!(set.evaluate(0, "s1", "apparel", &counts(120, 45), None, 2_000).is_none(), "no re-fire");
        let r = set.evaluate(0, "s1", "apparel", &counts(100, 2), None, 3_000).expect("resolves");
        assert_eq!(r.status, AlertStatus::Resolved);
        assert_eq!((r.starts_at, r.ends_at), (1_000, Some(3_000)));
        assert_eq!(r.fingerprint, a.fingerprint);
        assert_eq!(set.firing_count(), 0);
    }

    #[test]
    fn for_and_keep_firing_for_hold_back_and_debounce() {
        let mut set = RuleSet::new(vec![RateRule { for_ms: 120_000, keep_firing_for_ms: 120_000, ..rule() }]);
        let (bad, good) = (counts(100, 40), counts(100, 2));
        let at = |set: &mut RuleSet, t: i64, c: &Counts| set.evaluate(0, "s1", "toys", c, None, t * 60_000);
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
        assert!(set.evaluate(0, "s", "c", &bad, Some(&long_low), 1).is_none(), "the long window is not over 5%");
        assert!(set.evaluate(0, "s", "c", &bad, None, 2).is_none(), "no long counts, no page");
        let fired = set.evaluate(0, "s", "c", &bad, Some(&long_high), 3).expect("both windows breach");
        assert!(fired.annotations["confirm_window"].starts_with("1h: 120 of 1000"), "{:?}", fired.annotations);
        assert!(set.evaluate(0, "s", "c", &bad, Some(&long_low), 4).is_none(), "stays firing on the short window");
        let resolved = set.evaluate(0, "s", "c", &good, Some(&long_high), 5).expect("short window recovered");
        assert_eq!(resolved.status, AlertStatus::Resolved);
    }

    #[test]
    fn reload_keeps_state_of_kept_rules_and_forgets_removed_ones() {
        let other = RateRule { name: "other".into(), ..rule() };
        let mut set = RuleSet::new(vec![rule(), other.clone()]);
        assert!(set.evaluate(0, "s", "c", &counts(100, 40), None, 1).is_some());
        assert!(set.evaluate(1, "s", "c", &counts(100, 40), None, 1).is_some());
        // Swap order, drop nothing: no repeat page.
        assert_eq!(set.reload(vec![other.clone(), rule()]), 0);
        assert!(set.evaluate(1, "s", "c", &counts(100, 40), None, 2).is_none(), "still firing, not re-sent");
        // Remove "other": its state goes.
        assert_eq!(set.reload(vec![RateRule { threshold: 0.2, ..rule() }]), 1);
        assert_eq!(set.firing_count(), 1);
    }
}
