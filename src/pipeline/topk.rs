//! A bounded top-K of shops per (metric, window), ranked by the Wilson lower
//! bound of the rate (so 1 refund of 1 order does not top the list) among
//! shops over a denominator floor. Pure.
//!
//! Shops are offered as the rules visit them (only shops whose counters
//! changed), and kept as candidates while they rank within `2K`. A
//! [`refresh`](TopK::refresh) re-reads every candidate at the last complete
//! bucket (so a shop that went quiet drops as its window drains), sorts, and
//! trims: O(K) reads, whatever the number of shops.

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::engine::{Counts, Engine, ScopeView, VisitFloor};
use crate::rules::{stats, Metric};

/// Which (metric, window) pairs to rank, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct TopKConfig {
    /// Entries per list; 0 turns the top-K off.
    pub k: usize,
    pub metrics: Vec<Metric>,
    /// Shops under this denominator (e.g. orders paid) are not ranked.
    pub min_denominator: u64,
    /// One-sided z of the ranking bound.
    pub z: f64,
}

impl Default for TopKConfig {
    fn default() -> Self {
        TopKConfig {
            k: 10,
            metrics: vec![
                Metric::RefundRate,
                Metric::QualityRefundRate,
                Metric::DisputeRefundRate,
                Metric::NotReceivedRate,
                Metric::ChargebackRatio,
            ],
            min_denominator: 30,
            z: stats::z_for_confidence(0.95),
        }
    }
}

/// One ranked shop.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopEntry {
    pub shop_id: String,
    pub category: String,
    pub numerator: u64,
    pub denominator: u64,
    pub rate: f64,
    pub wilson_lower_bound: f64,
}

/// One ranked list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopList {
    pub metric: &'static str,
    pub window: String,
    /// Event time (UTC ms) of the window end the list describes.
    pub window_end: i64,
    pub entries: Vec<TopEntry>,
}

/// Keeps the `2k` best candidates; returns the `k`-th best bound.
fn trim(cands: &mut FxHashMap<Box<str>, f64>, k: usize) -> f64 {
    let mut bounds: Vec<f64> = cands.values().copied().collect();
    bounds.sort_by(|a, b| b.total_cmp(a));
    let keep = bounds.get(2 * k - 1).copied().unwrap_or(0.0);
    cands.retain(|_, b| *b >= keep);
    bounds.get(k - 1).copied().unwrap_or(0.0)
}

/// A list's candidates: shop id -> Wilson lower bound.
type Candidates = FxHashMap<Box<str>, f64>;

/// Ranks `shop_id` by its window `w` (`window`) in every list of window
/// `w`: `lists` are the candidates and floors of every (metric, window),
/// metric-major over `windows` windows.
fn rank(cfg: &TopKConfig, lists: (&mut [Candidates], &mut [f64], usize), shop_id: &str, window: &Counts, w: usize) {
    let (candidates, floor, windows) = lists;
    for (m, metric) in cfg.metrics.iter().enumerate() {
        let list = m * windows + w;
        let (num, den) = metric.ratio(window);
        if den < cfg.min_denominator || num == 0 {
            continue;
        }
        let bound = stats::wilson_lower_bound(num, den, cfg.z);
        let cands = &mut candidates[list];
        // A candidate's bound is updated in place (no new key).
        if let Some(b) = cands.get_mut(shop_id) {
            *b = bound;
        } else if bound > floor[list] || cands.len() < 2 * cfg.k {
            cands.insert(shop_id.into(), bound);
        }
        if cands.len() > 16 * cfg.k {
            floor[list] = trim(cands, cfg.k);
        }
    }
}

pub struct TopK {
    cfg: TopKConfig,
    /// Per (metric index, window): candidate shop -> last bound seen.
    candidates: Vec<FxHashMap<Box<str>, f64>>,
    /// Per list: the bound a newcomer must beat once the list is full.
    floor: Vec<f64>,
    windows: usize,
    /// The offered shop's counts, read into the same buffer each time: a
    /// fresh `Counts` cost a zeroing and a copy of its 576 bytes per offer,
    /// and a rule round offers every shop it visits.
    scratch: Counts,
}

impl TopK {
    pub fn new(cfg: TopKConfig, windows: usize) -> TopK {
        let lists = if cfg.k == 0 { 0 } else { cfg.metrics.len() * windows };
        TopK {
            cfg,
            candidates: vec![FxHashMap::default(); lists],
            floor: vec![0.0; lists],
            windows,
            scratch: Counts::default(),
        }
    }

    fn bound(&self, metric: Metric, view: ScopeView<'_>, w: usize, k: i64) -> Option<(u64, u64, f64)> {
        let (num, den) = metric.ratio(&view.read(w, k));
        (den >= self.cfg.min_denominator).then(|| (num, den, stats::wilson_lower_bound(num, den, self.cfg.z)))
    }

    /// Shops per list (0: off).
    pub fn k(&self) -> usize {
        self.cfg.k
    }

    /// The shops a list may take (the engine's visit floor): a shop joins a
    /// list only with some numerator over at least `min_denominator`.
    /// `None` (every shop) when off or without metrics.
    pub fn visit_floor(&self) -> Option<VisitFloor> {
        if !self.enabled() {
            return None;
        }
        self.cfg.metrics.iter().map(|m| m.visit_floor(1, self.cfg.min_denominator)).reduce(VisitFloor::or)
    }

    /// Lists are kept (k > 0).
    pub fn enabled(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Considers `shop` (just visited by window `w`'s rules) for every list
    /// of window `w`; `end`: the window's last complete bucket.
    pub fn offer(&mut self, shop_id: &str, view: ScopeView<'_>, w: usize, end: i64) {
        if self.candidates.is_empty() || w >= self.windows {
            return;
        }
        view.read_to(w, end, &mut self.scratch);
        let TopK { cfg, candidates, floor, windows, scratch } = self;
        rank(cfg, (candidates, floor, *windows), shop_id, scratch, w);
    }

    /// [`TopK::offer`] with window `w` already read (`window`: the shop's
    /// window `w` at its last complete bucket), as the window's rules just
    /// did: one read of the window per visit instead of two.
    pub fn offer_read(&mut self, shop_id: &str, window: &Counts, w: usize) {
        if self.candidates.is_empty() || w >= self.windows {
            return;
        }
        let TopK { cfg, candidates, floor, windows, .. } = self;
        rank(cfg, (candidates, floor, *windows), shop_id, window, w);
    }

    /// Re-reads every candidate at `ends` and returns the lists (metric-major).
    pub fn refresh(&mut self, engine: &Engine, ends: &[i64], window_names: &[String], end_ms: &[i64]) -> Vec<TopList> {
        if !self.enabled() {
            return Vec::new(); // `k = 0`: no lists (and no candidates to index)
        }
        let mut lists = Vec::with_capacity(self.candidates.len());
        for (m, metric) in self.cfg.metrics.clone().into_iter().enumerate() {
            for w in 0..self.windows {
                let list = m * self.windows + w;
                let mut ranked: Vec<(TopEntry, f64)> = Vec::new();
                for shop in self.candidates[list].keys() {
                    let Some(view) = engine.shop(shop) else { continue };
                    let Some((num, den, bound)) = self.bound(metric, view, w, ends[w]) else { continue };
                    if num == 0 {
                        continue;
                    }
                    let category = engine.shop_category(shop).unwrap_or_default().to_string();
                    let rate = num as f64 / den as f64;
                    let shop_id = shop.to_string();
                    let entry = TopEntry {
                        shop_id,
                        category,
                        numerator: num,
                        denominator: den,
                        rate,
                        wilson_lower_bound: bound,
                    };
                    ranked.push((entry, bound));
                }
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.shop_id.cmp(&b.0.shop_id)));
                ranked.truncate(2 * self.cfg.k);
                self.candidates[list] = ranked.iter().map(|(e, b)| (Box::from(e.shop_id.as_str()), *b)).collect();
                self.floor[list] = if ranked.len() >= self.cfg.k { ranked[self.cfg.k - 1].1 } else { 0.0 };
                ranked.truncate(self.cfg.k);
                lists.push(TopList {
                    metric: metric.name(),
                    window: window_names[w].clone(),
                    window_end: end_ms[w],
                    entries: ranked.into_iter().map(|(e, _)| e).collect(),
                });
            }
        }
        lists
    }
}
