//! Precision on generated traffic: 100,000 shops (300 busy, 19,700 small,
//! 80,000 tiny with 1 to 5 orders each, many of them refunding everything),
//! 40 injected incidents, producer retries (duplicates), events out of order
//! within the allowed lateness, and orders and refunds read from two
//! partitions. Every incident must alert within 2 minutes of event time of
//! its start, and no healthy shop may alert.
//!
//! The rule is a fast-paging one: refund rate over 5 minutes sliding every
//! 30 s, Wilson lower bound at 95% above 10%, at least 30 orders and 5 refunds.

use std::collections::{BTreeMap, HashMap};

use peakguard::config::Config;
use peakguard::engine::SourceId;
use peakguard::event::*;
use peakguard::pipeline::Pipeline;
use peakguard::rules::{Alert, AlertStatus};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson};

const T0: Millis = 1_794_326_400_000; // 2026-11-11T00:00:00+08:00
const SECOND: Millis = 1_000;
const MINUTE: Millis = 60_000;
const MINUTES: i64 = 30;
const ORDERS: SourceId = SourceId(0);
const REFUNDS: SourceId = SourceId(1);

const CONFIG: &str = r#"
[[engine.windows]]
name = "5m"
size = "5m"
step = "30s"

[[engine.windows]]
name = "1h"
size = "1h"
step = "5m"

[[rules]]
name = "refund_rate_fast"
metric = "refund_rate"
window = "5m"
threshold = 0.10
confidence = 0.95
min_orders = 30
min_refunds = 5
"#;

struct Shop {
    id: String,
    category: &'static str,
    /// Orders per minute (busy and small shops).
    per_minute: f64,
    /// Healthy refund rate.
    refund_rate: f64,
    /// Injected incident: start and refund rate from then on.
    incident: Option<(Millis, f64)>,
}

const CATEGORIES: [&str; 5] = ["apparel", "beauty", "electronics", "home", "toys"];

fn event(shop: &Shop, n: u64, t: Millis, refund: bool) -> Event {
    let money = Money::new(4_990, "CNY").unwrap();
    let body = if refund {
        EventBody::Refund {
            step: RefundStep::Requested,
            refund_type: RefundType::ReturnAndRefund,
            stage: RefundStage::AfterDelivery,
            reason: Reason::QualityDamaged,
            money,
            order_paid_at: t - 20 * MINUTE,
            requested_at: None,
        }
    } else {
        EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money }
    };
    Event {
        event_id: format!("{}-{n}", shop.id),
        shop_id: shop.id.clone(),
        order_id: format!("{}-o{n}", shop.id),
        sub_order_id: None,
        event_time: t,
        category: shop.category.into(),
        body,
    }
}

#[test]
fn every_incident_alerts_within_two_minutes_and_no_healthy_shop_alerts() {
    let mut rng = StdRng::seed_from_u64(11_11);
    let mut shops = Vec::new();
    for i in 0..300 {
        let per_minute = rng.random_range(25.0..60.0);
        let refund_rate = rng.random_range(0.005..0.04);
        // Every 7th busy shop has an incident: 60-95% refunds from a random second on.
        let incident = (i % 7 == 3)
            .then(|| (T0 + rng.random_range(5 * MINUTE..(MINUTES - 4) * MINUTE), rng.random_range(0.6..0.95)));
        shops.push(Shop { id: format!("busy-{i:03}"), category: CATEGORIES[i % 5], per_minute, refund_rate, incident });
    }
    for i in 0..19_700 {
        let per_minute = rng.random_range(0.05..1.2);
        let refund_rate = rng.random_range(0.0..0.06);
        shops.push(Shop {
            id: format!("small-{i:05}"),
            category: CATEGORIES[i % 5],
            per_minute,
            refund_rate,
            incident: None,
        });
    }
    let incidents: BTreeMap<String, Millis> =
        shops.iter().filter_map(|s| s.incident.map(|(t, _)| (s.id.clone(), t))).collect();
    assert!(incidents.len() >= 40, "{} incidents", incidents.len());

    // Per minute: every event of that minute (with up to 20 s of disorder),
    // fed orders-first on one partition and refunds on the other.
    let mut minutes: Vec<Vec<(SourceId, Event)>> = (0..MINUTES).map(|_| Vec::new()).collect();
    let mut n = 0u64;
    let push = |minutes: &mut Vec<Vec<(SourceId, Event)>>, src, e: Event| {
        let m = ((e.event_time - T0).div_euclid(MINUTE)).clamp(0, MINUTES - 1) as usize;
        minutes[m].push((src, e));
    };
    for shop in &shops {
        for m in 0..MINUTES {
            let orders = Poisson::new(shop.per_minute).unwrap().sample(&mut rng) as u64;
            for _ in 0..orders {
                let t = T0 + m * MINUTE + rng.random_range(0..MINUTE);
                n += 1;
                push(&mut minutes, ORDERS, event(shop, n, t, false));
                let rate = match shop.incident {
                    Some((start, rate)) if t >= start => rate,
                    _ => shop.refund_rate,
                };
                if rng.random_bool(rate) {
                    n += 1;
                    let e = event(shop, n, t + rng.random_range(0..20 * SECOND), true);
                    if rng.random_bool(0.01) {
                        push(&mut minutes, REFUNDS, e.clone()); // a producer retry
                    }
                    push(&mut minutes, REFUNDS, e);
                }
            }
        }
    }
    // 80,000 tiny shops: 1 to 5 orders each, and a third refund every order.
    for i in 0..80_000 {
        let shop = Shop {
            id: format!("tiny-{i:05}"),
            category: CATEGORIES[i % 5],
            per_minute: 0.0,
            refund_rate: 0.0,
            incident: None,
        };
        let t = T0 + rng.random_range(0..(MINUTES - 5) * MINUTE);
        let all_refunded = i % 3 == 0;
        for k in 0..rng.random_range(1..=5) {
            n += 1;
            push(&mut minutes, ORDERS, event(&shop, n, t + k * 7 * SECOND, false));
            if all_refunded {
                n += 1;
                push(&mut minutes, REFUNDS, event(&shop, n, t + k * 7 * SECOND + 90 * SECOND, true));
            }
        }
    }

    let path = std::path::Path::new("precision.toml");
    let cfg = Config::parse(CONFIG, path).expect("valid config");
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rule_book());
    p.assign(ORDERS, 0);
    p.assign(REFUNDS, 0);
    let mut alerts: Vec<Alert> = Vec::new();
    let mut events = 0u64;
    for (m, mut batch) in minutes.into_iter().enumerate() {
        // Roughly in time order, with disorder: sort by a coarse 20 s slot.
        batch.sort_by_key(|(_, e)| e.event_time / (20 * SECOND));
        for (i, (src, e)) in batch.iter().enumerate() {
            p.ingest(*src, e, m as i64 * 1_000);
            events += 1;
            if i % 2_000 == 0 {
                p.tick(m as i64 * 1_000, &mut alerts);
            }
        }
        p.tick(m as i64 * 1_000 + 1, &mut alerts);
    }
    p.finish(&mut alerts);
    let stats = p.stats();
    assert!(events > 500_000, "{events} events");
    assert!(stats.duplicate > 100, "producer retries are deduplicated: {stats:?}");
    assert_eq!(stats.late, 0, "{stats:?}");

    let mut first: HashMap<&str, &Alert> = HashMap::new();
    for a in alerts.iter().filter(|a| a.status == AlertStatus::Firing) {
        first.entry(a.shop_id.as_str()).or_insert(a);
    }
    let false_alarms: Vec<&&Alert> =
        first.iter().filter(|(s, _)| !incidents.contains_key(**s)).map(|(_, a)| a).collect();
    assert!(false_alarms.is_empty(), "healthy shops alerted: {false_alarms:#?}");
    let mut missed = Vec::new();
    let mut delays = Vec::new();
    for (shop, start) in &incidents {
        match first.get(shop.as_str()) {
            Some(a) if a.window_end >= *start && a.window_end - start <= 2 * MINUTE => {
                delays.push(a.window_end - start)
            }
            other => missed.push((shop, start, other.map(|a| a.window_end))),
        }
    }
    assert!(missed.is_empty(), "incidents not alerted within 2 minutes: {missed:?}");
    delays.sort();
    eprintln!(
        "{} events, {} shops, {} incidents all alerted; delay from incident start to window end: median {} s, max {} s",
        events,
        p.engine().shop_count(),
        incidents.len(),
        delays[delays.len() / 2] / 1000,
        delays[delays.len() - 1] / 1000
    );
}
