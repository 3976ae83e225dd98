//! Spike rules through the pure pipeline: a shop's rate against its own
//! previous 24 h and against the rest of its category, and the campaign
//! calendar muting a rule by event time.

use peakguard::config::{Config, RulesFile};
use peakguard::engine::SourceId;
use peakguard::event::*;
use peakguard::pipeline::Pipeline;
use peakguard::rules::{Alert, AlertStatus};

const T0: Millis = 1_794_326_400_000; // 2026-11-11T00:00:00+08:00
const MINUTE: Millis = 60_000;
const SRC: SourceId = SourceId(0);

/// A shop's traffic: orders per minute, and its refund rate by minute.
struct Shop {
    id: &'static str,
    category: &'static str,
    orders_per_min: u32,
    rate: fn(i64) -> f64,
    owed: f64,
}

fn event(shop: &Shop, n: u64, t: Millis, refund: bool) -> Event {
    let money = Money::new(100, "CNY").unwrap();
    let body = if refund {
        EventBody::Refund {
            step: RefundStep::Requested,
            refund_type: RefundType::RefundOnly,
            stage: RefundStage::AfterDelivery,
            reason: Reason::QualityDamaged,
            money,
            order_paid_at: t - 10 * MINUTE,
            requested_at: None,
        }
    } else {
        EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money }
    };
    Event {
        event_id: format!("{}-{n}", shop.id),
        shop_id: shop.id.into(),
        order_id: format!("{}-o{n}", shop.id),
        sub_order_id: None,
        event_time: t,
        category: shop.category.into(),
        body,
    }
}

/// Runs `minutes` of traffic from `start` (minute 0 = `start`) and returns the alerts.
fn run(rules_toml: &str, shops: &mut [Shop], start: Millis, minutes: i64) -> Vec<Alert> {
    run_pipeline(rules_toml, shops, start, minutes).0
}

fn run_pipeline(rules_toml: &str, shops: &mut [Shop], start: Millis, minutes: i64) -> (Vec<Alert>, Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, rules_toml).unwrap();
    RulesFile::load(&path).expect("parses");
    let cfg = Config::with_defaults().with_rules_file(&path).expect("valid rules");
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rule_book());
    p.assign(SRC, 0);
    let (mut alerts, mut n) = (Vec::new(), 0u64);
    for m in 0..minutes {
        let t = start + m * MINUTE;
        for shop in shops.iter_mut() {
            for i in 0..shop.orders_per_min {
                p.ingest(SRC, &event(shop, n, t + i as i64 * 100, false), m);
                n += 1;
            }
            shop.owed += (shop.rate)(m) * shop.orders_per_min as f64;
            while shop.owed >= 1.0 {
                shop.owed -= 1.0;
                p.ingest(SRC, &event(shop, n, t + 30_000, true), m);
                n += 1;
            }
        }
        p.tick(m, &mut alerts);
    }
    p.finish(&mut alerts);
    (alerts, p)
}

const SPIKE_RULE: &str = r#"
[[rules]]
name = "refunds_vs_baseline"
metric = "refund_rate"
window = "1h"
threshold = 0.03
baseline_window = "24h"
baseline_ratio = 3.0
category_ratio = 2.0
min_orders = 50
min_refunds = 8
"#;

const DAY_MIN: i64 = 24 * 60;

#[test]
fn spike_pages_a_jump_but_not_a_shop_that_always_runs_high_nor_a_category_wave() {
    // 26 h: the last two hours differ from the 24 h before them.
    let minutes = DAY_MIN + 120;
    let jump_at = DAY_MIN + 60;
    let mut shops = vec![
        // 2% for a day, then 20%: a real incident.
        Shop {
            id: "jump",
            category: "home",
            orders_per_min: 10,
            rate: |m| if m >= DAY_MIN + 60 { 0.2 } else { 0.02 },
            owed: 0.0,
        },
        // Always 15%: that is this shop's normal, not news (and before it has
        // a day of history, require_baseline keeps it quiet).
        Shop { id: "always_high", category: "home", orders_per_min: 10, rate: |_| 0.15, owed: 0.0 },
        Shop { id: "home_bulk", category: "home", orders_per_min: 40, rate: |_| 0.02, owed: 0.0 },
        // Every shop of "toys" goes from 2% to 20% together: a category-wide
        // wave (a courier failing), for the category rule, not a shop page.
        Shop {
            id: "toys1",
            category: "toys",
            orders_per_min: 10,
            rate: |m| if m >= DAY_MIN + 60 { 0.2 } else { 0.02 },
            owed: 0.0,
        },
        Shop {
            id: "toys2",
            category: "toys",
            orders_per_min: 10,
            rate: |m| if m >= DAY_MIN + 60 { 0.2 } else { 0.02 },
            owed: 0.0,
        },
        Shop {
            id: "toys3",
            category: "toys",
            orders_per_min: 10,
            rate: |m| if m >= DAY_MIN + 60 { 0.2 } else { 0.02 },
            owed: 0.0,
        },
    ];
    let start = T0 - DAY_MIN * MINUTE;
    let alerts = run(SPIKE_RULE, &mut shops, start, minutes);
    let fired: Vec<&Alert> = alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    let who: Vec<&str> = fired.iter().map(|a| a.shop_id.as_str()).collect();
    assert_eq!(who, vec!["jump"], "{fired:#?}");
    let a = fired[0];
    assert!(a.window_end > start + jump_at * MINUTE, "fired before the jump: {a:#?}");
    assert!(a.window_end <= start + (jump_at + 60) * MINUTE, "fired late: {a:#?}");
    let baseline = a.baseline_rate.expect("baseline known");
    assert!((baseline - 0.02).abs() < 0.005, "baseline {baseline}");
    assert!(a.category_rate.expect("category known") < 0.05, "{a:#?}");
    assert!(a.wilson_lower_bound > a.threshold && a.threshold >= 3.0 * baseline - 1e-9, "{a:#?}");
}

#[test]
fn a_phase_mutes_the_rule_then_its_end_lets_it_page() {
    // The shop refunds 30% from the start; deposit refunds are muted until T0 + 30m.
    let rules = format!(
        "{}\n[[phases]]\nname = \"deposit\"\nstart = \"2026-11-10T20:00:00+08:00\"\nend = \"2026-11-11T00:30:00+08:00\"\nmute = [\"refund_rate\"]\n",
        "[[rules]]\nname = \"refund_rate\"\nmetric = \"refund_rate\"\nwindow = \"5m\"\nthreshold = 0.10\n"
    );
    let mut shops = vec![Shop { id: "deposits", category: "home", orders_per_min: 20, rate: |_| 0.3, owed: 0.0 }];
    let alerts = run(&rules, &mut shops, T0, 60);
    let first = alerts.first().expect("pages once the phase is over");
    assert_eq!(first.status, AlertStatus::Firing);
    assert_eq!(first.window_end, T0 + 30 * MINUTE, "the first window end outside the phase: {first:#?}");
    assert_eq!(first.phase, None);
}

#[test]
fn phase_baseline_compares_the_sale_with_the_pre_sale() {
    // Pre-sale from 3 h before midnight; the rule compares each hour of the
    // main sale with the shop's last hour of pre-sale.
    let rules = r#"
[[rules]]
name = "vs_pre_sale"
metric = "refund_rate"
window = "1h"
threshold = 0.03
baseline_window = "1h"
baseline_phase = "pre_sale"
baseline_ratio = 3.0
min_orders = 50
min_refunds = 8

[[phases]]
name = "pre_sale"
start = "2026-11-10T21:00:00+08:00"
end = "2026-11-11T00:00:00+08:00"

[[phases]]
name = "main_sale"
start = "2026-11-11T00:00:00+08:00"
end = "2026-11-12T00:00:00+08:00"
"#;
    const PRE: i64 = 180;
    let mut shops = vec![
        // 2% in pre-sale, 25% from midnight: pages.
        Shop {
            id: "jump",
            category: "home",
            orders_per_min: 10,
            rate: |m| if m >= PRE { 0.25 } else { 0.02 },
            owed: 0.0,
        },
        // 20% all along: its pre-sale says that is normal.
        Shop { id: "steady", category: "home", orders_per_min: 10, rate: |_| 0.2, owed: 0.0 },
    ];
    let (alerts, p) = run_pipeline(rules, &mut shops, T0 - PRE * MINUTE, PRE + 120);
    assert_eq!(p.phase_baseline_shops("vs_pre_sale"), 2);
    let fired: Vec<&Alert> = alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    assert_eq!(fired.iter().map(|a| a.shop_id.as_str()).collect::<Vec<_>>(), vec!["jump"], "{fired:#?}");
    let a = fired[0];
    assert!(a.window_end > T0 && a.window_end <= T0 + 60 * MINUTE, "{a:#?}");
    assert!((a.baseline_rate.unwrap() - 0.02).abs() < 0.005, "{a:#?}");
    assert_eq!(a.phase.as_deref(), Some("main_sale"));
}
