//! One shop's report for the query API: every metric over every window, at
//! the last complete bucket (what rules read) and including the bucket in
//! progress (what dashboards show), with refund completion percentiles.
//! Built from the engine on the worker's thread. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::window::bucket_of;
use crate::engine::{Counts, Engine};
use crate::event::{Millis, RefundType};
use crate::rules::{stats, Metric};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rate {
    pub numerator: u64,
    pub denominator: u64,
    pub rate: f64,
    /// At 95% one-sided confidence.
    pub wilson_lower_bound: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowReport {
    /// Event time (UTC ms) of the end of the last complete bucket.
    pub end: Millis,
    /// Every metric at that bucket: what rules read.
    pub complete: BTreeMap<&'static str, Rate>,
    /// Every metric including the bucket in progress.
    pub current: BTreeMap<&'static str, Rate>,
    /// Refund completion seconds (p50, p90, p99) by refund type, complete buckets.
    pub refund_completion_seconds: BTreeMap<&'static str, BTreeMap<&'static str, f64>>,
    /// Refunded amount, minor units summed over currencies.
    pub refunds_completed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShopReport {
    pub shop_id: String,
    pub category: String,
    pub watermark: Option<Millis>,
    pub windows: BTreeMap<String, WindowReport>,
}

fn rates(c: &Counts, z: f64) -> BTreeMap<&'static str, Rate> {
    Metric::ALL
        .iter()
        .map(|m| {
            let (numerator, denominator) = m.ratio(c);
            let rate = if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 };
            let wilson_lower_bound = stats::wilson_lower_bound(numerator, denominator, z);
            (m.name(), Rate { numerator, denominator, rate, wilson_lower_bound })
        })
        .collect()
}

/// The report of `shop_id`, or `None` when the engine holds nothing for it.
pub fn report(engine: &Engine, shop_id: &str) -> Option<ShopReport> {
    let view = engine.shop(shop_id)?;
    let watermark = engine.watermark().current();
    let wm = watermark.or(engine.watermark().max_seen()).unwrap_or(0);
    let z = stats::z_for_confidence(0.95);
    let mut windows = BTreeMap::new();
    for (w, spec) in engine.config().windows.iter().enumerate() {
        let now = bucket_of(wm, spec.step_ms);
        let complete = view.read(w, now - 1);
        let current = view.read(w, now);
        let mut completion = BTreeMap::new();
        for (t, name) in [(RefundType::RefundOnly, "refund_only"), (RefundType::ReturnAndRefund, "return_and_refund")] {
            let q: BTreeMap<&'static str, f64> = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)]
                .into_iter()
                .filter_map(|(label, q)| Some((label, complete.completion_quantile_ms(t, q)? / 1000.0)))
                .collect();
            if !q.is_empty() {
                completion.insert(name, q);
            }
        }
        let report = WindowReport {
            end: now * spec.step_ms,
            complete: rates(&complete, z),
            current: rates(&current, z),
            refund_completion_seconds: completion,
            refunds_completed: complete.get(crate::engine::Field::RefundAmountMinor),
        };
        windows.insert(spec.name.clone(), report);
    }
    let category = engine.shop_category(shop_id).unwrap_or_default().to_string();
    Some(ShopReport { shop_id: shop_id.to_string(), category, watermark, windows })
}
