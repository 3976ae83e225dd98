//! Spike rules with `baseline_phase` compare a shop with itself as it was
//! when a campaign phase ended (e.g. its refund rate over the last 24 h of
//! the pre-sale). When the watermark passes the phase's end, the rule's
//! baseline window is read for every shop once and kept as (numerator,
//! denominator) of the rule's metric: 16 bytes per shop with data. Pure.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::engine::window::bucket_of;
use crate::engine::{Engine, BASELINE_BUCKETS};
use crate::event::Millis;
use crate::rules::{Ratio, RuleSet};

struct Snapshot {
    phase: String,
    ratios: FxHashMap<Box<str>, Ratio>,
}

/// Snapshots by rule name.
#[derive(Default)]
pub struct PhaseBaselines {
    taken: HashMap<String, Snapshot>,
}

impl PhaseBaselines {
    /// The baseline of `shop` for rule `rule`, once its phase has ended.
    pub fn get(&self, rule: &str, shop: &str) -> Option<Ratio> {
        self.taken.get(rule)?.ratios.get(shop).copied()
    }

    /// Shops with a baseline for `rule` (tests, metrics).
    pub fn len(&self, rule: &str) -> usize {
        self.taken.get(rule).map_or(0, |s| s.ratios.len())
    }

    /// Takes the snapshots that are due at watermark `wm`: for each rule
    /// with a `baseline_phase` whose end `wm` has passed and that has none
    /// for that phase yet. A snapshot due long ago (the process started
    /// after the phase ended, and the rings no longer hold it) is taken empty:
    /// such shops have no baseline.
    pub fn capture(&mut self, wm: Millis, rules: &RuleSet, engine: &Engine) {
        let windows = &engine.config().windows;
        for rule in rules.rules() {
            let Some(spike) = &rule.spike else { continue };
            let (Some((bw, _)), Some(phase)) = (&spike.baseline, &spike.baseline_phase) else { continue };
            if self.taken.get(&rule.name).is_some_and(|s| &s.phase == phase) {
                continue;
            }
            let Some(end) = rules.calendar().phases().iter().find(|p| &p.name == phase).map(|p| p.end) else {
                continue;
            };
            if wm < end {
                continue;
            }
            let step = windows[*bw].step_ms;
            let k = bucket_of(end, step) - 1;
            let readable = (bucket_of(wm, step) - 1 - k) as usize <= engine.slack(*bw) + BASELINE_BUCKETS;
            let ratios = if readable {
                engine
                    .shops()
                    .map(|(id, view)| (id, rule.metric.ratio(&view.read(*bw, k))))
                    .filter(|(_, (_, n))| *n > 0)
                    .map(|(id, r)| (Box::from(id), r))
                    .collect()
            } else {
                FxHashMap::default()
            };
            self.taken.insert(rule.name.clone(), Snapshot { phase: phase.clone(), ratios });
        }
    }
}
