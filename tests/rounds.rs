//! Which shops the rule rounds visit, and what they read: a shop under every
//! reader's volume floor is passed over (the engine's visit floors), and a
//! shop visited without its rule's volume reads no more than its window.
//! Neither may change an alert or a top-K list.

mod common;

use common::{by_incident, MINUTE, T0};
use peakguard::config::Config;
use peakguard::engine::SourceId;
use peakguard::event::*;
use peakguard::pipeline::topk::TopKConfig;
use peakguard::pipeline::Pipeline;
use peakguard::rules::AlertStatus;
use proptest::prelude::*;

const ORDERS: SourceId = SourceId(0);

/// Event `n` of `shop`: an order paid, or a refund requested (a quality
/// refund, credited to its order's cohort too).
fn ev(shop: &str, n: usize, t: Millis, refund: bool) -> Event {
    if refund {
        common::refund(shop, n, t)
    } else {
        common::order(shop, n, t)
    }
}

/// A firing shop that keeps trading, at a tenth of its volume: the round
/// of each bucket end visits it, and when its window falls under the rule's
/// volume floor (`min_orders`) it is evaluated all the same and resolves
/// then, not when the stream ends.
#[test]
fn a_firing_shop_that_falls_under_the_volume_floor_resolves_while_it_trades() {
    let cfg = Config::with_defaults();
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    p.assign(ORDERS, 0);
    let mut alerts = Vec::new();
    let (mut n, mut now) = (0, 0);
    let mut resolved_at_minute = None;
    for m in 0..20i64 {
        let (orders, refunds) = match m {
            0..5 => (20, 0),
            5..8 => (20, 10),
            _ => (2, 0),
        };
        common::trade_minute(&mut p, ORDERS, m, (orders, refunds), &mut n, now, |n, t, refund| ev("s", n, t, refund));
        now += 10;
        p.tick(now, &mut alerts);
        if resolved_at_minute.is_none() && alerts.iter().any(|a| a.status == AlertStatus::Resolved) {
            resolved_at_minute = Some(m);
        }
    }
    let statuses: Vec<AlertStatus> = alerts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![AlertStatus::Firing, AlertStatus::Resolved], "{alerts:#?}");
    // The window of minutes 7-11 holds 28 orders (under 30). It ends at
    // minute 12, and is evaluated once minute 13's events pass the 30 s
    // lateness.
    let m = resolved_at_minute.expect("resolved while the shop trades");
    assert_eq!(m, 13, "{alerts:#?}");
    assert_eq!(alerts[1].window_end, T0 + 12 * MINUTE, "{alerts:#?}");
    assert_eq!(alerts[1].denominator, 28, "{alerts:#?}");
}

/// Two shop rules on two windows (a 5-minute refund rate, and a 1-hour
/// cohort quality-refund rate), with volume floors, `for` and
/// `keep_firing_for` drawn by the test.
fn config(floors: [(u64, u64); 2], for_s: u64, keep_s: u64) -> Config {
    let mut cfg = Config::with_defaults();
    let mut second = cfg.rules[0].clone();
    second.name = "quality_cohort_1h".into();
    second.metric = "quality_refund_rate_cohort".into();
    second.window = "1h".into();
    cfg.rules.push(second);
    for (rule, (min_orders, min_refunds)) in cfg.rules.iter_mut().zip(floors) {
        (rule.min_orders, rule.min_refunds) = (min_orders, min_refunds);
        rule.for_ = std::time::Duration::from_secs(for_s);
        rule.keep_firing_for = std::time::Duration::from_secs(keep_s);
    }
    cfg
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// The visit floors pass over the shops that cannot reach any rule's
    /// volume or any top-K list's floor: the same alerts come out, with the
    /// same numbers, and the same top-K lists, as when every shop folded
    /// into is visited. Shops of a few orders and busy ones, events out of
    /// order, firing shops that fall under the floor.
    #[test]
    fn visit_floors_change_no_alert_and_no_top_k_list(
        shops in proptest::collection::vec((1u32..60, 0u32..50), 2..10),
        steps in proptest::collection::vec((0usize..10, -20_000i64..40_000, 0u32..100, 0u8..4), 300..1500),
        floors in [(0u64..40, 0u64..6), (0u64..40, 0u64..6)],
        (for_s, keep_s) in (0u64..180, 0u64..180),
        top_floor in 0u64..40,
    ) {
        let cfg = config(floors, for_s, keep_s);
        let top = TopKConfig { k: 3, min_denominator: top_floor, ..TopKConfig::default() };
        let build = || {
            // No visit budget: a round spread over calls visits a shop at a
            // time that depends on how many shops it holds, and a late event
            // folded in between changes what the visit reads.
            Pipeline::new(cfg.engine_config(), cfg.rate_rules()).with_top_k(top.clone())
        };
        let (mut floored, mut every) = (build(), build().without_visit_floors());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for p in [&mut floored, &mut every] {
            p.assign(ORDERS, 0);
        }
        let mut t = T0;
        for (n, &(shop, dt, roll, action)) in steps.iter().enumerate() {
            let (weight, refund_pct) = shops[shop % shops.len()];
            // Shop i trades with weight shops[i].0 (of 60), and refunds about
            // shops[i].1 % of its events.
            if roll % 60 >= weight {
                continue;
            }
            t += dt;
            let e = ev(&format!("shop-{}", shop % shops.len()), n, t, roll < refund_pct);
            floored.ingest(ORDERS, &e, n as i64);
            every.ingest(ORDERS, &e, n as i64);
            if action == 0 {
                floored.tick(n as i64, &mut a);
                every.tick(n as i64, &mut b);
            } else {
                floored.work(&mut a);
                every.work(&mut b);
            }
        }
        let tops = (floored.top_k(), every.top_k());
        floored.finish(&mut a);
        every.finish(&mut b);
        prop_assert_eq!(by_incident(&a), by_incident(&b));
        prop_assert_eq!(tops.0, tops.1);
        prop_assert_eq!(floored.top_k(), every.top_k());
    }
}

/// With the default rule (30 orders and 5 refunds in 5 minutes) a shop of a
/// few orders joins no pending list, and is listed by the event that brings
/// its cold list to the floor; without the floors every shop is listed.
#[test]
fn a_shop_joins_the_list_at_its_rules_volume_floor() {
    let cfg = Config::with_defaults();
    let mut floored = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    let mut every = Pipeline::new(cfg.engine_config(), cfg.rate_rules()).without_visit_floors();
    for p in [&mut floored, &mut every] {
        p.assign(ORDERS, 0);
        p.ingest(ORDERS, &ev("small", 0, T0, false), 0);
    }
    assert_eq!((floored.engine().pending_len(0), every.engine().pending_len(0)), (0, 1));
    // 30 orders, then 4 refunds: still under 5 refunds.
    for n in 1..30 {
        floored.ingest(ORDERS, &ev("busy", n, T0 + n as i64 * 1_000, false), 0);
    }
    for n in 30..34 {
        floored.ingest(ORDERS, &ev("busy", n, T0 + n as i64 * 1_000, true), 0);
    }
    assert_eq!(floored.engine().pending_len(0), 0, "29 orders, 4 refunds");
    floored.ingest(ORDERS, &ev("busy", 34, T0 + 34_000, false), 0);
    assert_eq!(floored.engine().pending_len(0), 0, "30 orders, 4 refunds");
    floored.ingest(ORDERS, &ev("busy", 35, T0 + 35_000, true), 0);
    assert_eq!(floored.engine().pending_len(0), 1, "30 orders, 5 refunds");
}
