//! One rule and how it judges one window: the volume floor, the Wilson lower
//! bound against a threshold, the confirming long window of a multi-window
//! rule, and the baseline and category comparisons of a spike rule. Pure.

use std::collections::BTreeMap;

use super::{stats, Metric, Scope, Severity};
use crate::engine::{Counts, VisitFloor};

/// A rate rule, resolved against the engine's windows.
#[derive(Clone, Debug, PartialEq)]
pub struct RateRule {
    pub name: String,
    pub scope: Scope,
    pub metric: Metric,
    /// Index into the engine's windows.
    pub window: usize,
    pub window_name: String,
    /// The Wilson lower bound must be above this; for a spike rule it is the
    /// absolute floor under the baseline and category comparisons.
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
    /// Spike rule: compare with the shop's own past and with its category.
    pub spike: Option<Spike>,
    /// Extra labels and annotations of the rule's alerts.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The long window of a multi-window rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm {
    /// Index into the engine's windows.
    pub window: usize,
    pub window_name: String,
    pub threshold: f64,
}

/// What a spike rule compares the current rate with. The rule breaches when
/// the Wilson lower bound of the current rate is above the largest of its
/// `threshold`, `baseline_ratio` x the baseline rate and `category_ratio` x
/// the category's rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Spike {
    /// The shop's own past rate: this window (index and name), read at its
    /// last bucket that ends where the current window starts (e.g. the 24 h
    /// before the current hour), or where `baseline_phase` ended.
    pub baseline: Option<(usize, String)>,
    /// Read the baseline window as it was when this campaign phase ended
    /// (e.g. the last 24 h of the pre-sale), instead of just before now.
    pub baseline_phase: Option<String>,
    pub baseline_ratio: f64,
    /// No page without a baseline that meets the volume floor (a shop new
    /// to the platform, or the first day after a cold start): the safe
    /// default; ratio rules still cover such shops.
    pub require_baseline: bool,
    /// The rest of the category (the shop's own counts taken out) over the
    /// same window, for shop-scope rules.
    pub category_ratio: Option<f64>,
}

/// The counts a rule reads at one window end.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub current: &'a Counts,
    /// The long window of a multi-window rule (`None`: no data).
    pub confirm: Option<&'a Counts>,
    /// A spike rule's baseline: (numerator, denominator) of its metric.
    pub baseline: Option<Ratio>,
    /// The rest of the shop's category over the rule's window: (numerator, denominator).
    pub peers: Option<Ratio>,
}

/// (numerator, denominator) of a rule's metric.
pub type Ratio = (u64, u64);

impl<'a> Inputs<'a> {
    pub fn of(current: &'a Counts) -> Inputs<'a> {
        Inputs { current, confirm: None, baseline: None, peers: None }
    }
}

/// The numbers a rule computed at one window end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub numerator: u64,
    pub denominator: u64,
    pub rate: f64,
    pub bound: f64,
    /// What the bound was compared with: the threshold, or for a spike rule
    /// the largest of the floor, the baseline and the category comparisons.
    pub threshold: f64,
    pub breached: bool,
    /// Spike rules: the baseline rate, when the baseline met the volume floor.
    pub baseline_rate: Option<f64>,
    /// Spike rules: the rest of the category's rate, when it met the floor.
    pub peer_rate: Option<f64>,
}

impl Evaluation {
    const NONE: Evaluation = Evaluation {
        numerator: 0,
        denominator: 0,
        rate: 0.0,
        bound: 0.0,
        threshold: 0.0,
        breached: false,
        baseline_rate: None,
        peer_rate: None,
    };
}

impl RateRule {
    /// A shop-scope ratio rule with the default volume floor (30 and 5),
    /// one-sided 95% confidence, severity page, no `for`, no confirming window.
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
            spike: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// The rate of `(k, n)` when it meets the rule's denominator floor.
    fn floor_rate(&self, ratio: Option<Ratio>) -> Option<f64> {
        let (k, n) = ratio?;
        (n >= self.min_denominator).then(|| k as f64 / n as f64)
    }

    /// Evaluates the rule's own (short) window, with `threshold` in place of
    /// the rule's (a campaign phase may change it).
    pub fn evaluate(&self, inputs: &Inputs<'_>, threshold: f64) -> Evaluation {
        let mut e = self.judge(inputs.current, threshold);
        if let Some(spike) = &self.spike {
            e.baseline_rate = spike.baseline.as_ref().and_then(|_| self.floor_rate(inputs.baseline));
            e.peer_rate = spike.category_ratio.and_then(|_| self.floor_rate(inputs.peers));
            let vs_baseline = e.baseline_rate.map_or(0.0, |b| b * spike.baseline_ratio);
            let vs_peers = e.peer_rate.zip(spike.category_ratio).map_or(0.0, |(p, r)| p * r);
            e.threshold = threshold.max(vs_baseline).max(vs_peers);
            let baseline_ok = !(spike.require_baseline && spike.baseline.is_some() && e.baseline_rate.is_none());
            e.breached = baseline_ok && self.volume_met(&e) && e.bound > e.threshold;
        }
        e
    }

    fn volume_met(&self, e: &Evaluation) -> bool {
        e.denominator >= self.min_denominator && e.numerator >= self.min_numerator
    }

    /// Whether window `c` has the volume this rule needs to breach
    /// (`min_orders`, `min_refunds` of its metric). Without it, [`evaluate`]
    /// never breaches, whatever the confirming window, baseline or peers:
    /// a key with no alert state then needs nothing else read.
    ///
    /// [`evaluate`]: RateRule::evaluate
    pub fn volume_met_by(&self, c: &Counts) -> bool {
        let (k, n) = self.metric.ratio(c);
        n >= self.min_denominator && k >= self.min_numerator
    }

    /// The shops this rule may breach on (the engine's visit floor): those
    /// holding its volume ([`RateRule::volume_met_by`]).
    pub fn visit_floor(&self) -> VisitFloor {
        self.metric.visit_floor(self.min_numerator, self.min_denominator)
    }

    fn judge(&self, c: &Counts, threshold: f64) -> Evaluation {
        let (k, n) = self.metric.ratio(c);
        let rate = if n == 0 { 0.0 } else { k as f64 / n as f64 };
        let bound = stats::wilson_lower_bound(k, n, self.z);
        let mut e = Evaluation { numerator: k, denominator: n, rate, bound, threshold, ..Evaluation::NONE };
        e.breached = self.volume_met(&e) && bound > threshold;
        e
    }

    /// Evaluates the confirming long window, if the rule has one.
    pub fn evaluate_confirm(&self, long: Option<&Counts>) -> Option<Evaluation> {
        let confirm = self.confirm.as_ref()?;
        Some(match long {
            Some(c) => self.judge(c, confirm.threshold),
            None => Evaluation { threshold: confirm.threshold, ..Evaluation::NONE },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NF;
    use proptest::prelude::*;

    proptest! {
        /// The rounds skip the rest of a rule's reads for a key with no
        /// alert state when its window lacks the volume
        /// ([`RateRule::volume_met_by`]): sound only if such a window never
        /// breaches, whatever the long window, baseline, peers and threshold.
        #[test]
        fn a_window_under_the_volume_floor_never_breaches(
            cells in proptest::collection::vec((0..NF, 0u64..60), 0..40),
            metric in 0..Metric::ALL.len(),
            (min_denominator, min_numerator) in (0u64..80, 0u64..12),
            threshold in 0.0f64..0.5,
            confirm in proptest::option::of(0.0f64..0.5),
            spike in proptest::option::of((any::<bool>(), 1.0f64..4.0, proptest::option::of(1.0f64..4.0))),
            baseline in proptest::option::of((0u64..50, 0u64..200)),
            peers in proptest::option::of((0u64..50, 0u64..200)),
        ) {
            let mut current = Counts::default();
            for (f, v) in cells {
                current.0[f] += v;
            }
            let mut rule = RateRule::new("r", Metric::ALL[metric], 0, "5m", threshold);
            (rule.min_denominator, rule.min_numerator) = (min_denominator, min_numerator);
            rule.confirm = confirm.map(|threshold| Confirm { window: 1, window_name: "1h".into(), threshold });
            rule.spike = spike.map(|(require_baseline, baseline_ratio, category_ratio)| Spike {
                baseline: Some((2, "24h".into())),
                baseline_phase: None,
                baseline_ratio,
                require_baseline,
                category_ratio,
            });
            let long = current.clone();
            let inputs = Inputs { current: &current, confirm: Some(&long), baseline, peers };
            let e = rule.evaluate(&inputs, threshold);
            let (k, n) = rule.metric.ratio(&current);
            prop_assert_eq!(rule.volume_met_by(&current), n >= min_denominator && k >= min_numerator);
            if !rule.volume_met_by(&current) {
                prop_assert!(!e.breached, "{e:?}");
            }
        }
    }
}
