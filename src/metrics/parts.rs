//! Process-wide gauges from several workers: each worker (and the scope
//! merge) publishes its own part, and the exported value is computed over
//! all parts: shops and alert counts add up, the watermark is the minimum,
//! catching up is true while any worker is, category and platform series
//! are the sums of every worker's share, and the top-K lists are ranked
//! over every worker's candidates. Publishing takes a lock, once a second
//! per worker and off the hot path.

use std::collections::{BTreeMap, HashMap};

use super::business::ScopeRow;
use crate::event::Millis;
use crate::pipeline::topk::TopList;

/// One rule's counts in one part.
#[derive(Clone, Debug, Default)]
pub(super) struct RuleCounts {
    pub severity: &'static str,
    pub firing: u64,
    pub pending: u64,
    pub muted: u64,
    pub held: u64,
}

/// What one worker (or the scope merge) last published.
#[derive(Clone, Debug, Default)]
pub(super) struct Part {
    pub rules: BTreeMap<String, RuleCounts>,
    pub shops: usize,
    pub watermark: Option<Millis>,
    pub catching_up: bool,
    pub dedup_evicted: u64,
    pub scopes: Vec<ScopeRow>,
    pub top: Vec<TopList>,
    /// Bytes of its last checkpoint round, and when its last one succeeded
    /// (wall clock, seconds).
    pub checkpoint: Option<(i64, Option<f64>)>,
}

#[derive(Default)]
pub(super) struct Parts(Vec<Part>);

impl Parts {
    pub fn get(&mut self, part: usize) -> &mut Part {
        if self.0.len() <= part {
            self.0.resize_with(part + 1, Part::default);
        }
        &mut self.0[part]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Part> {
        self.0.iter()
    }

    /// Per (rule, severity): the counts summed over parts.
    pub fn rules(&self) -> BTreeMap<(String, &'static str), RuleCounts> {
        let mut out: BTreeMap<(String, &'static str), RuleCounts> = BTreeMap::new();
        for (name, c) in self.0.iter().flat_map(|p| &p.rules) {
            let sum = out.entry((name.clone(), c.severity)).or_default();
            sum.severity = c.severity;
            sum.firing += c.firing;
            sum.pending += c.pending;
            sum.muted += c.muted;
            sum.held += c.held;
        }
        out
    }

    /// The lowest watermark of the parts that have one.
    pub fn watermark(&self) -> Option<Millis> {
        self.0.iter().filter_map(|p| p.watermark).min()
    }

    /// Every part's scope rows summed by (scope, category, window), in the
    /// order first seen.
    pub fn scopes(&self) -> Vec<ScopeRow> {
        if let [only] = self.0.as_slice() {
            return only.scopes.clone();
        }
        let mut out: Vec<ScopeRow> = Vec::new();
        let mut index: HashMap<(&'static str, String, String), usize> = HashMap::new();
        for row in self.0.iter().flat_map(|p| &p.scopes) {
            let key = (row.scope, row.category.clone(), row.window.clone());
            match index.get(&key) {
                Some(&i) => out[i].counts.add(&row.counts),
                None => {
                    index.insert(key, out.len());
                    out.push(row.clone());
                }
            }
        }
        out
    }

    /// The top-K lists over every part: each part keeps its own best `k`
    /// of the shops it owns, so the best `k` of their union are the best `k`
    /// overall.
    pub fn top(&self, k: usize) -> Vec<TopList> {
        let mut lists: Vec<TopList> = Vec::new();
        for list in self.0.iter().flat_map(|p| &p.top) {
            match lists.iter_mut().find(|l| l.metric == list.metric && l.window == list.window) {
                Some(l) => {
                    l.window_end = l.window_end.min(list.window_end);
                    l.entries.extend(list.entries.iter().cloned());
                }
                None => lists.push(list.clone()),
            }
        }
        for l in &mut lists {
            l.entries.sort_by(|a, b| {
                b.wilson_lower_bound.total_cmp(&a.wilson_lower_bound).then_with(|| a.shop_id.cmp(&b.shop_id))
            });
            l.entries.truncate(k);
        }
        lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::topk::TopEntry;

    fn entry(shop: &str, bound: f64) -> TopEntry {
        TopEntry {
            shop_id: shop.into(),
            category: "c".into(),
            numerator: 1,
            denominator: 2,
            rate: 0.5,
            wilson_lower_bound: bound,
        }
    }

    fn list(entries: Vec<TopEntry>, end: i64) -> TopList {
        TopList { metric: "refund_rate", window: "5m".into(), window_end: end, entries }
    }

    #[test]
    fn parts_add_up() {
        let mut parts = Parts::default();
        let rule = |firing| RuleCounts { severity: "page", firing, pending: 1, muted: 0, held: 2 };
        parts.get(0).rules.insert("r".into(), rule(2));
        parts.get(2).rules.insert("r".into(), rule(3));
        (parts.get(0).watermark, parts.get(2).watermark) = (Some(50), Some(40));
        let sums = parts.rules();
        let r = &sums[&("r".to_string(), "page")];
        assert_eq!((r.firing, r.pending, r.held), (5, 2, 4));
        assert_eq!(parts.watermark(), Some(40), "part 1 published nothing and holds nothing back");
        parts.get(0).top = vec![list(vec![entry("a", 0.9), entry("b", 0.5)], 100)];
        parts.get(2).top = vec![list(vec![entry("c", 0.7), entry("d", 0.1)], 90)];
        let top = parts.top(3);
        let shops: Vec<&str> = top[0].entries.iter().map(|e| e.shop_id.as_str()).collect();
        assert_eq!(shops, ["a", "c", "b"]);
        assert_eq!(top[0].window_end, 90);
    }
}
