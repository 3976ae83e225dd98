//! The high-cardinality families of /metrics, rendered by hand: business
//! rates and denominators per window for the platform and each category,
//! refund completion quantiles, and the top-K shops. With 200 categories
//! that is about 30,000 series; going through the prometheus crate's
//! registry (label hashing on export, protobuf families on every scrape)
//! cost about 11 ms per export and 630 ms per scrape (`cargo bench --bench
//! scrape`). The worker renders this block once a second; a scrape copies it.

use std::fmt::Write as _;

use crate::engine::window::bucket_of;
use crate::engine::{Engine, ScopeView};
use crate::event::{Millis, RefundType};
use crate::pipeline::topk::TopList;
use crate::rules::Metric;

/// Categories beyond this many get no series of their own (bounded cardinality).
pub const MAX_EXPORTED_CATEGORIES: usize = 200;

/// Escapes a label value for the text exposition format.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// One (scope, category, window) read at the watermark, by one worker; the
/// rows of several workers add up ([`super::parts`]).
#[derive(Clone, Debug)]
pub struct ScopeRow {
    pub scope: &'static str,
    pub category: String,
    pub window: String,
    pub counts: crate::engine::Counts,
}

/// The platform and category rows of `engine` at `watermark` (each window
/// ending with the bucket in progress, as dashboards want; rules read
/// complete buckets only).
pub fn scope_rows(engine: &Engine, watermark: Millis) -> Vec<ScopeRow> {
    let windows = &engine.config().windows;
    let mut rows = Vec::new();
    let mut push = |scope, category: &str, view: ScopeView<'_>| {
        for (w, spec) in windows.iter().enumerate() {
            let counts = view.read(w, bucket_of(watermark, spec.step_ms));
            rows.push(ScopeRow { scope, category: category.to_string(), window: spec.name.clone(), counts });
        }
    };
    if let Some(p) = engine.platform() {
        push("platform", "", p);
    }
    for (name, view) in engine.categories() {
        push("category", name, view);
    }
    rows
}

/// Renders the platform and category families of `rows`, the first
/// [`MAX_EXPORTED_CATEGORIES`] categories only. Returns the text and the
/// number of categories left out.
pub fn render_scopes(all: &[ScopeRow]) -> (String, usize) {
    let mut categories: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut skipped = std::collections::HashSet::new();
    let mut rows: Vec<&ScopeRow> = Vec::with_capacity(all.len());
    for r in all {
        if r.scope == "category" && !categories.contains(r.category.as_str()) {
            if categories.len() >= MAX_EXPORTED_CATEGORIES {
                skipped.insert(r.category.as_str());
                continue;
            }
            categories.insert(r.category.as_str());
        }
        rows.push(r);
    }
    let mut out = String::with_capacity(rows.len() * Metric::ALL.len() * 2 * 110);
    header(
        &mut out,
        "peakguard_business_rate",
        "Platform and per-category rates over each window ending with the bucket in progress",
    );
    for r in &rows {
        let cat = escape(&r.category);
        for m in Metric::ALL {
            let (k, n) = m.ratio(&r.counts);
            let rate = if n == 0 { 0.0 } else { k as f64 / n as f64 };
            let _ = writeln!(
                out,
                "peakguard_business_rate{{scope=\"{}\",category=\"{cat}\",metric=\"{}\",window=\"{}\"}} {rate}",
                r.scope,
                m.name(),
                r.window
            );
        }
    }
    header(&mut out, "peakguard_business_denominator", "Denominator of peakguard_business_rate (e.g. orders paid)");
    for r in &rows {
        let cat = escape(&r.category);
        for m in Metric::ALL {
            let (_, n) = m.ratio(&r.counts);
            let _ = writeln!(
                out,
                "peakguard_business_denominator{{scope=\"{}\",category=\"{cat}\",metric=\"{}\",window=\"{}\"}} {n}",
                r.scope,
                m.name(),
                r.window
            );
        }
    }
    header(
        &mut out,
        "peakguard_refund_completion_seconds",
        "Refund completion time (requested -> completed) quantiles, within 19%",
    );
    for r in &rows {
        let cat = escape(&r.category);
        for (t, label) in [(RefundType::RefundOnly, "refund_only"), (RefundType::ReturnAndRefund, "return_and_refund")]
        {
            for q in [0.5, 0.9, 0.99] {
                let v = r.counts.completion_quantile_ms(t, q).map_or(0.0, |ms| ms / 1000.0);
                let _ = writeln!(
                    out,
                    "peakguard_refund_completion_seconds{{scope=\"{}\",category=\"{cat}\",refund_type=\"{label}\",window=\"{}\",quantile=\"{q}\"}} {v}",
                    r.scope, r.window
                );
            }
        }
    }
    (out, skipped.len())
}

/// Renders the top-K families.
pub fn render_top(lists: &[TopList]) -> String {
    let mut out = String::new();
    for (name, help, bound) in [
        ("peakguard_top_shop_bound", "Top-K shops per metric and window by Wilson lower bound of the rate", true),
        ("peakguard_top_shop_rate", "Rate of the top-K shops (see peakguard_top_shop_bound)", false),
    ] {
        header(&mut out, name, help);
        for l in lists {
            for (i, e) in l.entries.iter().enumerate() {
                let v = if bound { e.wilson_lower_bound } else { e.rate };
                let _ = writeln!(
                    out,
                    "{name}{{metric=\"{}\",window=\"{}\",rank=\"{}\",shop_id=\"{}\"}} {v}",
                    l.metric,
                    escape(&l.window),
                    i + 1,
                    escape(&e.shop_id)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
