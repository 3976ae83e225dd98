//! The pure pipeline (engine + rules) driven directly, without Kafka: event
//! time, watermarks across partitions, and the alert lifecycle.

mod common;

use common::{by_incident, MINUTE, T0};
use peakguard::config::Config;
use peakguard::engine::{Fold, SourceId};
use peakguard::event::*;
use peakguard::pipeline::topk::TopKConfig;
use peakguard::pipeline::Pipeline;
use peakguard::rules::{Alert, AlertStatus};

fn ev(shop: &str, n: usize, t: Millis, refund: bool) -> Event {
    let money = Money::new(100, "CNY").unwrap();
    Event {
        event_id: format!("{shop}-{n}-{refund}"),
        shop_id: shop.into(),
        order_id: format!("{shop}-{n}"),
        sub_order_id: None,
        event_time: t,
        category: "home".into(),
        body: if refund {
            EventBody::Refund {
                step: RefundStep::Requested,
                refund_type: RefundType::RefundOnly,
                stage: RefundStage::PreShipment,
                reason: Reason::ChangedMind,
                money,
                order_paid_at: t - MINUTE,
                requested_at: None,
            }
        } else {
            EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money }
        },
    }
}

fn pipeline() -> Pipeline {
    let cfg = Config::with_defaults();
    Pipeline::new(cfg.engine_config(), cfg.rate_rules())
}

const ORDERS: SourceId = SourceId(0);
const REFUNDS: SourceId = SourceId(1);

/// A healthy shop (6% refunds) whose refunds topic is read four minutes of
/// event time ahead of its orders topic: no alert, because rules only read
/// buckets that every partition has passed.
#[test]
fn lagging_topic_does_not_fake_a_spike() {
    let mut p = pipeline();
    p.assign(ORDERS, 0);
    p.assign(REFUNDS, 0);
    let mut alerts: Vec<Alert> = Vec::new();
    let (mut now, mut n) = (0, 0);
    let minute = |m: i64| T0 + m * MINUTE;
    for m in -4..30i64 {
        if m + 4 < 30 {
            for i in 0..3 {
                p.ingest(REFUNDS, &ev("s", n, minute(m + 4) + i * 10_000, true), now);
                n += 1;
            }
        }
        if m >= 0 {
            for i in 0..50 {
                p.ingest(ORDERS, &ev("s", n, minute(m) + i * 1_000, false), now);
                n += 1;
            }
        }
        now += 1;
        p.tick(now, &mut alerts);
    }
    p.finish(&mut alerts);
    assert!(alerts.is_empty(), "false alert: {alerts:?}");
    assert_eq!(p.stats().folded, 30 * 53);
}

/// The spike fires once, then resolves when the window drains, and the
/// resolution carries the firing alert's fingerprint and start.
#[test]
fn fires_then_resolves_as_window_drains() {
    let mut p = pipeline();
    p.assign(ORDERS, 0);
    let mut alerts = Vec::new();
    let mut n = 0;
    let mut now = 0;
    for m in 0..20i64 {
        let refunds = if (5..8).contains(&m) { 8 } else { 0 };
        common::trade_minute(&mut p, ORDERS, m, (20, refunds), &mut n, now, |n, t, refund| ev("s", n, t, refund));
        now += 10;
        p.tick(now, &mut alerts);
    }
    p.finish(&mut alerts);
    let statuses: Vec<AlertStatus> = alerts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![AlertStatus::Firing, AlertStatus::Resolved], "{alerts:#?}");
    assert_eq!(alerts[0].fingerprint, alerts[1].fingerprint);
    assert_eq!(alerts[1].starts_at, alerts[0].starts_at);
    assert!(alerts[1].ends_at.unwrap() > alerts[0].starts_at);
}

/// Events older than the watermark minus the longest window (30 d) are
/// rejected as late, events more than `max_future` (1 h) ahead of the newest
/// as future, and repeated event ids as duplicates.
#[test]
fn late_future_and_duplicate_events_are_rejected() {
    const DAY: Millis = 86_400_000;
    let mut p = pipeline();
    p.assign(ORDERS, 0);
    let mut alerts = Vec::new();
    assert_eq!(p.ingest(ORDERS, &ev("s", 0, T0 + 31 * DAY, false), 0), Fold::Folded);
    p.tick(1, &mut alerts);
    assert_eq!(p.ingest(ORDERS, &ev("s", 1, T0, false), 2), Fold::Late);
    assert_eq!(p.ingest(ORDERS, &ev("s", 2, T0 + 2 * DAY, false), 3), Fold::Folded);
    assert_eq!(p.ingest(ORDERS, &ev("s", 3, T0 + 31 * DAY + 2 * 3_600_000, false), 4), Fold::Future);
    assert_eq!(p.ingest(ORDERS, &ev("s", 4, T0 + 31 * DAY + 1_800_000, false), 5), Fold::Folded);
    assert_eq!(p.ingest(ORDERS, &ev("s", 4, T0 + 31 * DAY + 1_800_000, false), 6), Fold::Duplicate);
    let st = p.stats();
    assert_eq!((st.folded, st.late, st.future, st.duplicate), (3, 1, 1, 1));
}

/// With `for` and `keep_firing_for`, a pending alert fires and a firing one
/// resolves as the watermark moves, even when its shop sends nothing more
/// (another shop's events move time).
#[test]
fn pending_and_firing_alerts_progress_without_new_events() {
    let mut cfg = Config::with_defaults();
    cfg.rules[0].for_ = std::time::Duration::from_secs(120);
    cfg.rules[0].keep_firing_for = std::time::Duration::from_secs(120);
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    p.assign(ORDERS, 0);
    let (mut alerts, mut n, mut now) = (Vec::new(), 0, 0);
    for m in 0..30i64 {
        // The spiking shop: 20 orders and 8 refunds a minute for 6 minutes, then silence.
        if m < 6 {
            for i in 0..20 {
                p.ingest(ORDERS, &ev("spike", n, T0 + m * MINUTE + i * 1_000, false), now);
                n += 1;
            }
            for i in 0..8 {
                p.ingest(ORDERS, &ev("spike", n, T0 + m * MINUTE + 30_000 + i * 1_000, true), now);
                n += 1;
            }
        }
        // Another shop keeps event time moving.
        p.ingest(ORDERS, &ev("other", n, T0 + m * MINUTE + 59_000, false), now);
        n += 1;
        now += 10;
        p.tick(now, &mut alerts);
    }
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    let (fired, resolved) = (&alerts[0], &alerts[1]);
    assert_eq!((fired.status, resolved.status), (AlertStatus::Firing, AlertStatus::Resolved));
    // The window ending T0+2m is the first over the 30-order floor (pending);
    // it fires once the breach has held for 2 minutes.
    assert_eq!(fired.starts_at, T0 + 4 * MINUTE);
    // The last window with 30+ orders of the spike ends at T0+9m (minutes 4
    // and 5); keep_firing_for holds it 2 more minutes.
    assert_eq!(resolved.ends_at, Some(T0 + 11 * MINUTE), "{resolved:#?}");
    assert_eq!(p.rules().active_count(), 0);
}

/// Category- and platform-scope rules alert on the aggregate, with the
/// scope in labels and fingerprint, and no shop id.
#[test]
fn category_and_platform_rules_alert_on_aggregates() {
    let mut cfg = Config::with_defaults();
    let mut platform = cfg.rules[0].clone();
    platform.name = "platform_refunds".into();
    platform.scope = peakguard::rules::Scope::Platform;
    let mut category = cfg.rules[0].clone();
    category.name = "category_refunds".into();
    category.scope = peakguard::rules::Scope::Category;
    cfg.rules = vec![platform, category];
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    p.assign(ORDERS, 0);
    let (mut alerts, mut n) = (Vec::new(), 0);
    for m in 0..10i64 {
        // Twenty shops, each too small to alert on its own: 2 orders and
        // 1 refund a minute each.
        for s in 0..20 {
            let shop = format!("s{s}");
            for i in 0..2 {
                p.ingest(ORDERS, &ev(&shop, n, T0 + m * MINUTE + i * 1_000 + s, false), 0);
                n += 1;
            }
            p.ingest(ORDERS, &ev(&shop, n, T0 + m * MINUTE + 30_000 + s, true), 0);
            n += 1;
        }
        p.tick(m, &mut alerts);
    }
    p.finish(&mut alerts);
    let scopes: Vec<(&str, &str, &str)> =
        alerts.iter().map(|a| (a.rule.as_str(), a.scope.as_str(), a.target())).collect();
    assert_eq!(scopes, vec![("platform_refunds", "platform", "platform"), ("category_refunds", "category", "home")]);
    for a in &alerts {
        assert_eq!(a.shop_id, "");
        assert!(!a.labels.contains_key("shop_id"));
        assert_eq!(a.labels["scope"], a.scope);
    }
    assert_ne!(alerts[0].fingerprint, alerts[1].fingerprint);
}

/// Each window keeps its own pending list: a shop folded into once is
/// visited by the 5 min window's rules when that minute completes and then
/// leaves its list, while the 30 d window (1 day buckets, read by the top-K)
/// keeps it until its day completes. Another shop's events move the
/// watermark. Without the top-K, no rule reads the 30 d window per shop and
/// it keeps no list at all.
#[test]
fn pending_lists_are_per_window() {
    let windows = Config::with_defaults().engine_config().windows;
    let (five_min, day) = (0, windows.len() - 1);
    assert_eq!((windows[five_min].step_ms, windows[day].step_ms), (MINUTE, 86_400_000));
    for top_k in [true, false] {
        // Every shop listed: the lists' mechanics, not the visit floors
        // (`tests/rounds.rs`), which would pass over shops this small.
        let mut p = pipeline().without_visit_floors();
        if top_k {
            p = p.with_top_k(TopKConfig::default());
        }
        p.assign(ORDERS, 0);
        let mut alerts = Vec::new();
        p.ingest(ORDERS, &ev("quiet", 0, T0 + 10_000, false), 0);
        assert_eq!((p.engine().pending_len(five_min), p.engine().pending_len(day)), (1, usize::from(top_k)));
        // Ten minutes of a busy shop; each minute's tick drains the 5 min list.
        for m in 0..10 {
            for i in 0..10 {
                p.ingest(ORDERS, &ev("busy", m * 10 + i, T0 + m as i64 * MINUTE + i as i64 * 5_000, false), 0);
            }
            p.tick(0, &mut alerts);
        }
        // The newest minute (and the lateness margin) is not complete: only
        // "busy" waits in the 5 min list; both wait in the 30 d one.
        assert_eq!(p.engine().pending_len(five_min), 1, "quiet left the 5 min list once its minute was evaluated");
        assert_eq!(p.engine().pending_len(day), 2 * usize::from(top_k), "the day bucket is not complete");
        p.finish(&mut alerts);
        assert_eq!((p.engine().pending_len(five_min), p.engine().pending_len(day)), (0, 0));
        assert!(alerts.is_empty(), "{alerts:?}");
    }
}

/// `[topk] k = 0` turns the top-K off: no lists, and nothing breaks when the
/// worker asks for them (it used to index an empty candidate table).
#[test]
fn top_k_off_gives_no_lists() {
    let mut p = pipeline().with_top_k(TopKConfig { k: 0, ..TopKConfig::default() });
    p.assign(ORDERS, 0);
    let mut alerts = Vec::new();
    for m in 0..5 {
        for i in 0..40 {
            p.ingest(ORDERS, &ev("s", m * 40 + i, T0 + m as i64 * MINUTE + i as i64 * 1_000, i % 5 == 0), 0);
        }
        p.tick(0, &mut alerts);
    }
    p.finish(&mut alerts);
    assert!(p.top_k().is_empty());
    let mut on = pipeline().with_top_k(TopKConfig { min_denominator: 1, ..TopKConfig::default() });
    on.assign(ORDERS, 0);
    for i in 0..40 {
        on.ingest(ORDERS, &ev("s", i, T0 + i as i64 * 1_000, i % 5 == 0), 0);
    }
    on.finish(&mut alerts);
    assert!(!on.top_k().is_empty(), "with k > 0 the lists are there");
}

/// The top-K lists hold the best shops of all, not only of the candidates
/// kept along the way: 300 shops (more than the 16 K candidates a list
/// holds before it trims) with refund rates spread over 0-40%, offered as
/// the rules visit them over five minutes, against every shop ranked by the
/// same bound from its own windows. Candidates updated in place (a shop
/// offered again) and newcomers above the floor both go through here.
#[test]
fn top_k_lists_are_the_best_shops_of_all() {
    use peakguard::rules::{stats, Metric};
    let cfg = TopKConfig::default();
    let mut p = pipeline().with_top_k(cfg.clone());
    p.assign(ORDERS, 0);
    let mut alerts = Vec::new();
    let mut n = 0;
    for m in 0..5i64 {
        for shop in 0..300usize {
            // 12 events a minute; shop s refunds (s * 7) % 41 in 100 of them.
            for i in 0..12usize {
                let refund = (n * 13 + shop) % 100 < (shop * 7) % 41;
                let t = T0 + m * MINUTE + (shop * 12 + i) as i64 * 10;
                p.ingest(ORDERS, &ev(&format!("s{shop:03}"), n, t, refund), 0);
                n += 1;
            }
        }
        p.tick(0, &mut alerts);
    }
    p.finish(&mut alerts);
    let lists = p.top_k();
    let windows = Config::with_defaults().engine_config().windows;
    let mut checked = 0;
    for list in &lists {
        let metric = Metric::RefundRate;
        if list.metric != metric.name() {
            continue;
        }
        let w = windows.iter().position(|x| x.name == list.window).expect("a configured window");
        let k = list.window_end / windows[w].step_ms - 1;
        let mut all: Vec<(f64, String)> = p
            .engine()
            .shops()
            .filter_map(|(id, view)| {
                let (num, den) = metric.ratio(&view.read(w, k));
                (den >= cfg.min_denominator && num > 0)
                    .then(|| (stats::wilson_lower_bound(num, den, cfg.z), id.to_string()))
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        all.truncate(cfg.k);
        let got: Vec<(f64, String)> = list.entries.iter().map(|e| (e.wilson_lower_bound, e.shop_id.clone())).collect();
        assert_eq!(got, all, "{} over {}", list.metric, list.window);
        checked += 1;
    }
    assert_eq!(checked, windows.len(), "a refund-rate list per window");
}

mod visit_budget {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Spreading a bucket end's visits over many calls (as few as one
        /// shop a call) changes when alerts come out, never which: each
        /// incident goes through the same transitions, with the same
        /// numbers, as when every shop is visited at once.
        #[test]
        fn spreading_visits_changes_no_alert(
            shops in proptest::collection::vec(0u32..70, 2..7),
            steps in proptest::collection::vec((0usize..7, 0i64..8_000, any::<bool>(), 0u8..4), 300..1500),
            budget in 1usize..4,
        ) {
            let mut cfg = Config::with_defaults();
            // Low volume floors and a `for` / `keep_firing_for`, so incidents
            // go through pending, firing and resolved.
            let rule = &mut cfg.rules[0];
            (rule.min_orders, rule.min_refunds) = (5, 2);
            rule.for_ = std::time::Duration::from_secs(120);
            rule.keep_firing_for = std::time::Duration::from_secs(60);
            let mut whole = Pipeline::new(cfg.engine_config(), cfg.rate_rules())
                .with_top_k(TopKConfig::default());
            let mut spread = Pipeline::new(cfg.engine_config(), cfg.rate_rules())
                .with_top_k(TopKConfig::default())
                .with_visit_budget(budget);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for p in [&mut whole, &mut spread] {
                p.assign(ORDERS, 0);
            }
            let mut t = T0;
            for (n, &(shop, dt, refund_roll, action)) in steps.iter().enumerate() {
                let shop_n = shop % shops.len();
                // Shop i refunds about shops[i] % of its orders.
                let refund = refund_roll && (n as u32 % 100) < shops[shop_n];
                t += dt;
                let e = ev(&format!("shop-{shop_n}"), n, t, refund);
                whole.ingest(ORDERS, &e, n as i64);
                spread.ingest(ORDERS, &e, n as i64);
                if action == 0 {
                    whole.tick(n as i64, &mut a);
                    spread.tick(n as i64, &mut b);
                } else {
                    spread.work(&mut b);
                }
            }
            whole.finish(&mut a);
            spread.finish(&mut b);
            prop_assert!(a.len() == b.len(), "{} alerts at once, {} spread", a.len(), b.len());
            prop_assert_eq!(by_incident(&a), by_incident(&b));
        }
    }

    /// A round left unfinished is finished before the next bucket end's
    /// round starts, and `work` drains it a budget at a time.
    #[test]
    fn work_drains_a_round_a_budget_at_a_time() {
        let cfg = Config::with_defaults();
        let mut p = Pipeline::new(cfg.engine_config(), cfg.rate_rules()).with_visit_budget(3).without_visit_floors();
        p.assign(ORDERS, 0);
        let mut out = Vec::new();
        for s in 0..10 {
            p.ingest(ORDERS, &ev(&format!("s{s}"), s, T0 + 1_000, false), 0);
        }
        // Event time moves past the first minute (and the lateness).
        p.ingest(ORDERS, &ev("s0", 99, T0 + 10 * MINUTE, false), 0);
        p.tick(1, &mut out);
        let left = p.work(&mut out);
        assert!(left > 0 && left < 10, "{left} shops left after a tick and one call");
        let mut calls = 0;
        while p.work(&mut out) > 0 {
            calls += 1;
            assert!(calls < 10, "work makes no progress");
        }
        assert!(calls >= 1);
    }
}

/// The tick forgets the dedup ids the watermark has passed by the horizon,
/// so a steady stream stays inside a small `dedup_capacity` without the
/// bound forgetting anything early (`peakguard_dedup_evicted_total` stays
/// 0), and a retry inside the horizon still counts once.
#[test]
fn ticks_forget_dedup_ids_past_the_horizon_not_by_capacity() {
    let mut cfg = Config::with_defaults();
    cfg.engine.dedup_capacity = 2_000;
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    p.assign(ORDERS, 0);
    let mut alerts = Vec::new();
    // Two hours at 5 orders a second (36,000 ids); one horizon (30 s) holds 150.
    let mut retries = 0;
    for i in 0..36_000usize {
        let t = T0 + i as i64 * 200;
        let e = ev("steady", i, t, false);
        assert_eq!(p.ingest(ORDERS, &e, 0), Fold::Folded);
        if i % 97 == 0 && i > 0 {
            // A producer retry of an event 10 s older: inside the horizon.
            assert_eq!(p.ingest(ORDERS, &ev("steady", i - 50, T0 + (i as i64 - 50) * 200, false), 0), Fold::Duplicate);
            retries += 1;
        }
        if i % 50 == 49 {
            p.tick(0, &mut alerts);
        }
    }
    assert_eq!(p.stats().duplicate, retries);
    assert_eq!(p.engine().dedup_evicted(), 0, "the horizon, not the capacity, should forget ids");
}

/// A partition the watermark has run ahead of (here: it was caught up while
/// another went on) still catches a retry read right after its first copy:
/// its dedup forgets by its own partition's progress, not the watermark's
/// alone.
#[test]
fn a_partition_behind_the_watermark_still_catches_retries() {
    let mut p = pipeline();
    p.engine_mut().set_source_shard(ORDERS, 0);
    p.engine_mut().set_source_shard(REFUNDS, 1);
    p.assign(ORDERS, 0);
    p.assign(REFUNDS, 0);
    let mut alerts = Vec::new();
    assert_eq!(p.ingest(REFUNDS, &ev("slow", 0, T0, false), 0), Fold::Folded);
    p.caught_up(REFUNDS);
    // The other partition runs ten minutes ahead: the watermark follows it.
    for i in 0..600 {
        assert_eq!(p.ingest(ORDERS, &ev("fast", i, T0 + i as i64 * 1_000, false), 0), Fold::Folded);
    }
    p.tick(0, &mut alerts);
    assert!(p.engine().watermark().current().unwrap() > T0 + 5 * MINUTE);
    // The slow partition goes on from where it was, and a producer retries.
    for i in 1..50usize {
        let e = ev("slow", i, T0 + i as i64 * 1_000, false);
        assert_eq!(p.ingest(REFUNDS, &e, 0), Fold::Folded);
        p.tick(0, &mut alerts);
        assert_eq!(p.ingest(REFUNDS, &e, 0), Fold::Duplicate, "retry of slow-{i}");
    }
}
