//! What a rule reads for one key at one bucket end: its window, the long
//! window of a multi-window rule, and a spike rule's baseline (the shop's
//! own past, or its rate when a campaign phase ended) and peers (the rest of
//! its category). Pure.

use super::phase_baseline::PhaseBaselines;
use crate::engine::window::bucket_of;
use crate::engine::{Counts, ScopeView, WindowSpec};
use crate::rules::{Inputs, RateRule, Ratio};

/// What a rule reads for one key at bucket `k` of its window: the window
/// itself, the long window of a multi-window rule, and a spike rule's
/// baseline and peers (the rest of the category).
#[derive(Clone, Debug, Default)]
pub(super) struct Read {
    current: Counts,
    confirm: Option<Counts>,
    baseline: Option<Ratio>,
    peers: Option<Ratio>,
}

impl Read {
    /// Reads into this read, whatever it held. `key`: the shop (for phase
    /// baselines); `category`: its category's view. The shop rounds reuse
    /// one read for every shop they visit, where a fresh one per visit cost
    /// three copies of its counters (a tenth of the hot path).
    pub fn read_at(
        &mut self,
        rule: &RateRule,
        key: &str,
        view: Option<ScopeView<'_>>,
        category: Option<ScopeView<'_>>,
        ctx: (&[WindowSpec], &PhaseBaselines),
        k: i64,
    ) {
        self.read_current(rule, view, k);
        self.read_rest(rule, key, view, category, ctx, k);
    }

    /// The first part of [`Read::read_at`]: the rule's own window, alone.
    /// What else the rule reads ([`Read::read_rest`]) can wait until
    /// [`Read::can_breach`] says the window may breach.
    #[inline]
    pub fn read_current(&mut self, rule: &RateRule, view: Option<ScopeView<'_>>, k: i64) {
        match view {
            Some(v) => v.read_to(rule.window, k, &mut self.current),
            None => self.current = Counts::default(),
        }
    }

    /// Whether `rule` may breach on the window [`Read::read_current`] read:
    /// whatever its long window, baseline and peers, a rule breaches only
    /// on a window that has its volume (`min_orders`, `min_refunds`).
    #[inline]
    pub fn can_breach(&self, rule: &RateRule) -> bool {
        rule.volume_met_by(&self.current)
    }

    /// The window [`Read::read_current`] read last.
    pub fn current(&self) -> &Counts {
        &self.current
    }

    /// The second part of [`Read::read_at`], after [`Read::read_current`]
    /// for the same rule, key and bucket: the long window, the baseline
    /// and the peers.
    pub fn read_rest(
        &mut self,
        rule: &RateRule,
        key: &str,
        view: Option<ScopeView<'_>>,
        category: Option<ScopeView<'_>>,
        ctx: (&[WindowSpec], &PhaseBaselines),
        k: i64,
    ) {
        let (windows, phase_baselines) = ctx;
        let end_ms = (k + 1) * windows[rule.window].step_ms;
        match &rule.confirm {
            None => self.confirm = None,
            Some(confirm) => {
                // The long window of a multi-window rule: the last of its
                // complete buckets that ends at or before the short window's end.
                let c = self.confirm.get_or_insert_with(Counts::default);
                let step = windows[confirm.window].step_ms;
                match view {
                    Some(v) => v.read_to(confirm.window, bucket_of(end_ms, step) - 1, c),
                    None => *c = Counts::default(),
                }
            }
        }
        let spike = rule.spike.as_ref();
        self.baseline = spike.and_then(|s| match (&s.baseline, &s.baseline_phase) {
            (None, _) => None,
            (Some(_), Some(_)) => phase_baselines.get(&rule.name, key),
            (Some((bw, _)), None) => {
                // The last baseline bucket that ends where the current window starts.
                let start_ms = end_ms - windows[rule.window].size_ms;
                let past = view.map(|v| v.read(*bw, bucket_of(start_ms, windows[*bw].step_ms) - 1));
                Some(rule.metric.ratio(&past.unwrap_or_default()))
            }
        });
        let current = &self.current;
        self.peers = spike.and_then(|s| s.category_ratio).and(category).map(|c| {
            let ((kc, nc), (ks, ns)) = (rule.metric.ratio(&c.read(rule.window, k)), rule.metric.ratio(current));
            (kc.saturating_sub(ks), nc.saturating_sub(ns))
        });
    }

    /// Adds another worker's read of the same rule, key and bucket end
    /// (every part is a sum of counters; see `merge.rs`).
    pub fn add(&mut self, o: &Read) {
        self.current.add(&o.current);
        match (&mut self.confirm, &o.confirm) {
            (Some(a), Some(b)) => a.add(b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
        for (a, b) in [(&mut self.baseline, o.baseline), (&mut self.peers, o.peers)] {
            if let Some((bk, bn)) = b {
                let (ak, an) = a.get_or_insert((0, 0));
                *ak += bk;
                *an += bn;
            }
        }
    }

    pub fn inputs(&self) -> Inputs<'_> {
        Inputs { current: &self.current, confirm: self.confirm.as_ref(), baseline: self.baseline, peers: self.peers }
    }
}
