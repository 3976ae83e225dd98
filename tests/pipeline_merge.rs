//! Several workers of one process: category and platform rules evaluated by
//! a `ScopeMerge` over the workers' shares must page exactly as one pipeline
//! holding every shop does.

mod common;

use std::collections::BTreeMap;

use common::{MINUTE, T0};
use peakguard::config::Config;
use peakguard::engine::SourceId;
use peakguard::event::*;
use peakguard::pipeline::merge::ScopeMerge;
use peakguard::pipeline::Pipeline;
use peakguard::rules::{Alert, Scope};
use proptest::prelude::*;

/// Event `n` (an order paid, or a refund requested) of shop number `shop`.
fn ev(shop: usize, category: &str, n: usize, t: Millis, refund: bool) -> Event {
    let shop = format!("shop-{shop}");
    let mut e = if refund { common::refund(&shop, n, t) } else { common::order(&shop, n, t) };
    e.category = category.into();
    e
}

/// A category and a platform copy of the default refund-rate rule, with low
/// floors and a `for` / `keep_firing_for`, so incidents go through pending,
/// firing and resolved; plus the shop rule, which each worker keeps.
fn config() -> Config {
    let mut cfg = Config::with_defaults();
    let mut shop = cfg.rules[0].clone();
    (shop.min_orders, shop.min_refunds) = (5, 2);
    let mut category = shop.clone();
    category.name = "category_refunds".into();
    category.scope = Scope::Category;
    category.for_ = std::time::Duration::from_secs(120);
    category.keep_firing_for = std::time::Duration::from_secs(60);
    let mut platform = category.clone();
    platform.name = "platform_refunds".into();
    platform.scope = Scope::Platform;
    cfg.rules = vec![shop, category, platform];
    cfg
}

/// [`config`] with category and platform rules that page at once (no `for`).
fn config_paging_at_once() -> Config {
    let mut cfg = config();
    for r in &mut cfg.rules[1..] {
        r.for_ = std::time::Duration::ZERO;
    }
    cfg
}

/// `n` worker pipelines, each reading its partition as source 0, and
/// their merge.
fn worker_pipelines(cfg: &Config, n: usize) -> (Vec<Pipeline>, ScopeMerge) {
    let mut parts: Vec<Pipeline> =
        (0..n).map(|_| Pipeline::new(cfg.engine_config(), cfg.rate_rules()).with_scope_merge()).collect();
    for p in &mut parts {
        p.assign(SourceId(0), 0);
    }
    (parts, ScopeMerge::new(cfg.rate_rules(), cfg.engine_config().windows, n))
}

/// What each worker's loop does after a tick: its status, then its share.
fn hand_over(parts: &mut [Pipeline], merge: &mut ScopeMerge, b: &mut Vec<Alert>) {
    for (i, p) in parts.iter_mut().enumerate() {
        merge.status(i, p.holds_merge(0), false, b);
        if let Some(share) = p.take_scope_share() {
            merge.offer(i, share, b);
        }
    }
}

/// A tick of the whole pipeline and of every worker, which then hand over.
fn tick_all(
    now: Millis,
    whole: &mut Pipeline,
    parts: &mut [Pipeline],
    merge: &mut ScopeMerge,
    ab: (&mut Vec<Alert>, &mut Vec<Alert>),
) {
    whole.tick(now, ab.0);
    for p in parts.iter_mut() {
        p.tick(now, ab.1);
    }
    hand_over(parts, merge, ab.1);
}

/// End of input: the whole pipeline finishes, and the workers agree on
/// where the process's input ends (as they do through their `Team`), so
/// each reads up to it before the merge finishes.
fn finish_all(
    whole: &mut Pipeline,
    parts: &mut [Pipeline],
    merge: &mut ScopeMerge,
    a: &mut Vec<Alert>,
    b: &mut Vec<Alert>,
) {
    whole.finish(a);
    let last = parts.iter().filter_map(Pipeline::input_end).max();
    for p in parts.iter_mut() {
        p.finish_at(last, b);
    }
    hand_over(parts, merge, b);
    merge.finish(b);
}

/// Every transition, by fingerprint, in the order emitted.
fn by_incident<'a>(alerts: impl Iterator<Item = &'a Alert>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in alerts {
        out.entry(a.fingerprint.clone()).or_default().push(format!(
            "{:?} {} {:?} {}/{} {} {}",
            a.status, a.starts_at, a.ends_at, a.numerator, a.denominator, a.window, a.window_end
        ));
    }
    out
}

/// Category and platform transitions (shop rules stay with each worker).
fn scoped(alerts: &[Alert]) -> BTreeMap<String, Vec<String>> {
    by_incident(alerts.iter().filter(|a| a.scope != "shop"))
}

/// Random streams over a few shops in two categories, split by shop over
/// 2-3 workers: every category and platform incident goes through the same
/// transitions, with the same numbers, as in one pipeline.
#[test]
fn merged_scopes_page_as_one_pipeline() {
    let strategy = (
        proptest::collection::vec(0u32..60, 4..10),
        proptest::collection::vec((0usize..10, 0i64..6_000, 0u32..100, 0u8..3), 300..1500),
        2usize..4,
    );
    let seen = std::cell::Cell::new(0);
    // PROPTEST_CASES runs more (to hunt a rare split); 40 by default.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(40);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    let result = runner.run(&strategy, |(refund_pct, steps, workers)| {
        seen.set(seen.get() + case(&refund_pct, &steps, workers)?);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The comparison must have had incidents to compare.
    assert!(seen.get() >= 40, "only {} category/platform transitions over every case", seen.get());
}

/// One case; returns the transitions compared.
fn case(refund_pct: &[u32], steps: &[(usize, i64, u32, u8)], workers: usize) -> Result<usize, TestCaseError> {
    let cfg = config();
    let shops = refund_pct.len();
    let category = |s: usize| if s.is_multiple_of(3) { "toys" } else { "home" };
    let mut whole = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    let (mut parts, mut merge) = worker_pipelines(&cfg, workers);
    // The whole pipeline reads worker i's partition as source i, so its
    // watermark is the minimum over them, as the merge's is.
    for i in 0..workers {
        whole.assign(SourceId(i as u32), 0);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // Every shop (so every worker) is seen first.
    let mut events: Vec<(Event, u8)> = (0..shops).map(|s| (ev(s, category(s), s, T0, false), 1)).collect();
    let mut t = T0;
    for (n, &(shop, dt, roll, action)) in steps.iter().enumerate() {
        let s = shop % shops;
        t += dt;
        events.push((ev(s, category(s), shops + n, t, roll < refund_pct[s]), action));
    }
    // As a worker does, tick at least every half minute of event time, and
    // as a partition's idle timeout does, keep a quiet worker's watermark
    // moving (a buyer's cancellation: no metric counts it). So no worker's
    // watermark jumps further than a tick reaches back, and every bucket end
    // one pipeline evaluates, the merge has every worker's reads for (a
    // jump is `a_jumping_worker_skips_rather_than_pages_on_part_of_a_sum`;
    // workers that start apart are the same case).
    let mut last_seen = vec![T0; workers];
    let mut last_tick = T0;
    let mut n = 0;
    let fold = |e: &Event, whole: &mut Pipeline, parts: &mut Vec<Pipeline>, n: &mut i64| {
        let s: usize = e.shop_id["shop-".len()..].parse().unwrap();
        whole.ingest(SourceId((s % workers) as u32), e, *n);
        parts[s % workers].ingest(SourceId(0), e, *n);
        *n += 1;
    };
    for (i, (e, action)) in events.iter().enumerate() {
        let t = e.event_time;
        for (w, seen) in last_seen.iter_mut().enumerate() {
            if t - *seen >= 30_000 {
                let mut quiet = ev(w, category(w), n as usize, t, false);
                quiet.event_id = format!("quiet-{n}");
                quiet.body = EventBody::Order {
                    step: OrderStep::Cancelled,
                    cancelled_by: Some(CancelledBy::Buyer),
                    money: Money::new(100, "CNY").unwrap(),
                };
                fold(&quiet, &mut whole, &mut parts, &mut n);
                *seen = t;
            }
        }
        let s: usize = e.shop_id["shop-".len()..].parse().unwrap();
        last_seen[s % workers] = t;
        fold(e, &mut whole, &mut parts, &mut n);
        // The workers start together: a first tick once each has its shops.
        if *action == 0 || t - last_tick >= 30_000 || i + 1 == shops {
            last_tick = t;
            tick_all(n, &mut whole, &mut parts, &mut merge, (&mut a, &mut b));
        }
    }
    tick_all(n, &mut whole, &mut parts, &mut merge, (&mut a, &mut b));
    finish_all(&mut whole, &mut parts, &mut merge, &mut a, &mut b);
    prop_assert_eq!(merge.late_reads(), 0);
    prop_assert_eq!(merge.skipped(), 0);
    let (whole_scopes, merged_scopes) = (scoped(&a), scoped(&b));
    prop_assert_eq!(&whole_scopes, &merged_scopes);
    Ok(whole_scopes.values().flatten().count())
}

/// A worker whose partition has not produced its first record holds the
/// merge back until it does or reaches the end of its log (with nothing to
/// read, it holds nothing back), and one that lags holds the merge back
/// until it catches up.
#[test]
fn a_lagging_worker_holds_the_merge_back() {
    let cfg = config();
    let (mut parts, mut merge) = worker_pipelines(&cfg, 2);
    let mut out = Vec::new();
    // Worker 0: ten minutes of a 50% refund rate in "home"; worker 1 nothing yet.
    let mut n = 0;
    for m in 0..10 {
        for i in 0..10 {
            parts[0].ingest(SourceId(0), &ev(i % 4, "home", n, T0 + m * MINUTE + i as i64, i % 2 == 0), 0);
            n += 1;
        }
        parts[0].tick(0, &mut out);
    }
    assert!(parts[1].holds_merge(0), "worker 1 awaits its partition's first record");
    merge.status(1, parts[1].holds_merge(0), false, &mut out);
    let share = parts[0].take_scope_share().expect("buckets completed");
    merge.offer(0, share, &mut out);
    assert!(out.is_empty(), "worker 1's share may yet come: {out:?}");
    assert!(merge.rules().counts_by_rule().iter().all(|&c| c == (0, 0)), "nothing pending: nothing evaluated");
    // Its partition turns out to be empty: it holds nothing back.
    parts[1].caught_up(SourceId(0));
    assert!(!parts[1].holds_merge(0));
    merge.status(1, parts[1].holds_merge(0), false, &mut out);
    let fired: Vec<&str> = out.iter().map(|a| a.scope.as_str()).collect();
    assert_eq!(fired, ["category", "platform"], "worker 1 has nothing to read, so it holds nothing back");
    // Worker 1 now has a watermark far behind: the next buckets wait for it.
    out.clear();
    parts[1].ingest(SourceId(0), &ev(7, "home", n, T0 + MINUTE, false), 0);
    parts[1].tick(0, &mut out);
    merge.status(1, true, false, &mut out);
    for m in 10..14 {
        parts[0].ingest(SourceId(0), &ev(1, "home", n + 1 + m as usize, T0 + m * MINUTE, false), 0);
        parts[0].tick(0, &mut out);
    }
    let before = merge.rules().counts_by_rule();
    merge.offer(0, parts[0].take_scope_share().unwrap(), &mut out);
    assert_eq!(merge.rules().counts_by_rule(), before, "nothing evaluated while worker 1 lags");
    // Once worker 1 passes them, they are evaluated.
    parts[1].ingest(SourceId(0), &ev(7, "home", n + 100, T0 + 15 * MINUTE, false), 0);
    parts[1].tick(0, &mut out);
    if let Some(share) = parts[1].take_scope_share() {
        merge.offer(1, share, &mut out);
    }
    assert!(merge.late_reads() > 0, "worker 1's first buckets were already evaluated");
    assert_eq!(merge.transitions(), (2, 0));
}

/// A worker whose watermark jumps further than a tick reaches back (here a
/// quiet partition that wakes up) has no reads for the bucket ends it
/// jumped over. The merge skips those, and counts them, rather than page on
/// the other workers' part of the sum: alone, worker 0's shop has a 43%
/// refund rate, while with worker 1's orders the category stays under 10%.
#[test]
fn a_jumping_worker_skips_rather_than_pages_on_part_of_a_sum() {
    let cfg = config_paging_at_once();
    let (mut parts, mut merge) = worker_pipelines(&cfg, 2);
    let mut out = Vec::new();
    let mut n = 0;
    for m in 0..15 {
        for i in 0..10 {
            let t = T0 + m * MINUTE + i * 5_000;
            parts[0].ingest(SourceId(0), &ev(0, "home", n, t, i < 3), 0);
            n += 1;
        }
        // Worker 1: 100 orders a minute, then quiet from minute 10 to 14.
        if !(10..14).contains(&m) {
            for i in 0..100 {
                parts[1].ingest(SourceId(0), &ev(1, "home", n, T0 + m * MINUTE + i * 500, false), 0);
                n += 1;
            }
        }
        for (w, p) in parts.iter_mut().enumerate() {
            p.tick(0, &mut out);
            merge.status(w, true, false, &mut out);
            if let Some(share) = p.take_scope_share() {
                merge.offer(w, share, &mut out);
            }
        }
    }
    let scoped: Vec<&Alert> = out.iter().filter(|a| a.scope != "shop").collect();
    assert!(scoped.is_empty(), "paged on part of a category: {scoped:?}");
    assert!(merge.skipped() >= 2, "worker 1 jumped over two bucket ends ({} skipped)", merge.skipped());
    assert_eq!(merge.late_reads(), 0);
    // The shop rule, which each worker keeps, did page worker 0's shop.
    assert!(out.iter().any(|a| a.scope == "shop" && a.shop_id == "shop-0"));
}

/// A worker whose partition is first heard from when the other has read
/// nine minutes (the other's first fetch came back first, with all of its
/// records): the merge waits for it, as one pipeline's first watermark
/// waits for that partition, so the other worker's "home" share, at a 30%
/// refund rate alone and 5% with the late worker's orders, never pages on
/// its own. The bucket ends before the late worker's first reads are ones
/// that one pipeline does not evaluate either: not counted as skipped.
#[test]
fn a_worker_heard_from_late_holds_the_merge_and_skips_nothing() {
    let cfg = config_paging_at_once();
    let (mut parts, mut merge) = worker_pipelines(&cfg, 2);
    let mut whole = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    whole.assign(SourceId(0), 0);
    whole.assign(SourceId(1), 0);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut n = 0;
    // Worker 1's records, read all at once at minute 9.
    let mut backlog = Vec::new();
    for m in 0..14 {
        // (worker, shop, category, time, refund)
        let mut minute = Vec::new();
        for i in 0..10 {
            let t = T0 + m * MINUTE + i * 5_000;
            minute.push((0, i as usize % 2, "home", t, i < 3));
            backlog.push((1, 3, "toys", t, i < 5 && m >= 9));
            backlog.extend((0..10).map(|j| (1, 2, "home", t + j * 100, false)));
        }
        if m >= 9 {
            minute.append(&mut backlog);
        }
        for (w, shop, category, t, refund) in minute {
            let e = ev(shop, category, n, t, refund);
            whole.ingest(SourceId(w as u32), &e, 0);
            parts[w].ingest(SourceId(0), &e, 0);
            n += 1;
        }
        tick_all(0, &mut whole, &mut parts, &mut merge, (&mut a, &mut b));
    }
    finish_all(&mut whole, &mut parts, &mut merge, &mut a, &mut b);
    let (whole_scopes, merged_scopes) = (scoped(&a), scoped(&b));
    assert!(a.iter().any(|a| a.scope == "category" && a.category == "toys"), "toys pages: {a:#?}");
    let home: Vec<&Alert> = b.iter().filter(|a| a.scope == "category" && a.category == "home").collect();
    assert!(home.is_empty(), "paged on one worker's part of home: {home:#?}");
    assert_eq!(whole_scopes, merged_scopes);
    assert_eq!((merge.skipped(), merge.late_reads()), (0, 0));
}
