//! Shared event mixes for the engine benches.
#![allow(dead_code)]

use peakguard::engine::{Engine, EngineConfig, SourceId, WindowSpec};
use peakguard::event::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

pub const T0: Millis = 1_794_326_400_000;

/// Events folded between two watermark updates in the `_live` benches (the
/// Kafka worker ticks after each batch: up to 4,096 records, or fewer when
/// event time moves a finest step).
pub const TICK_EVERY: usize = 4_096;

/// Folds `events` into `engine`, each event's lookups prefetched ahead in
/// two steps: `2 * ahead` events before its fold the control bytes and
/// dedup groups (`Engine::prefetch_early`), `ahead` before it the shop's
/// entry (`Engine::prefetch_shop`); `ahead` 0: no prefetching. The pipeline
/// does both for the record it is about to decode (it sees no records
/// further ahead); this shows what a lookahead would give.
pub fn fold_prefetching(engine: &mut Engine, events: &[Event], ahead: usize) {
    for (i, e) in events.iter().enumerate() {
        if ahead > 0 {
            if let Some(far) = events.get(i + 2 * ahead) {
                engine.prefetch_early(SourceId(0), far.shop_id.as_bytes(), far.event_id.as_bytes());
            }
            if let Some(next) = events.get(i + ahead) {
                engine.prefetch_shop(next.shop_id.as_bytes());
            }
        }
        std::hint::black_box(engine.fold(SourceId(0), e, 0));
    }
}

/// The default windows: 5 min / 1 h / 24 h / 30 d.
pub fn config() -> EngineConfig {
    let w = |name: &str, size: i64, step: i64| WindowSpec { name: name.into(), size_ms: size, step_ms: step };
    EngineConfig::with_windows(vec![
        w("5m", 300_000, 60_000),
        w("1h", 3_600_000, 300_000),
        w("24h", 86_400_000, 3_600_000),
        w("30d", 30 * 86_400_000, 86_400_000),
    ])
}

/// A realistic after-sales mix for one order: created, paid, dispatched,
/// delivered, and for some orders a refund request (5%), a completed refund,
/// a return, a dispute or a chargeback.
fn body(rng: &mut StdRng, t: Millis) -> EventBody {
    let money = Money { amount_minor: rng.random_range(990..49_900), currency: *b"CNY" };
    let paid = t - rng.random_range(0..86_400_000);
    match rng.random_range(0..100) {
        0..=29 => EventBody::Order { step: OrderStep::Created, cancelled_by: None, money },
        30..=59 => EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money },
        60..=74 => EventBody::Shipment { step: ShipmentStep::Dispatched, promised_by: Some(t + 3_600_000) },
        75..=89 => EventBody::Shipment { step: ShipmentStep::Delivered, promised_by: None },
        90..=94 => EventBody::Refund {
            step: RefundStep::Requested,
            refund_type: RefundType::RefundOnly,
            stage: RefundStage::PreShipment,
            reason: Reason::ALL[rng.random_range(0..Reason::ALL.len())],
            money,
            order_paid_at: paid,
            requested_at: None,
        },
        95..=96 => EventBody::Refund {
            step: RefundStep::Completed,
            refund_type: RefundType::RefundOnly,
            stage: RefundStage::PreShipment,
            reason: Reason::ChangedMind,
            money,
            order_paid_at: paid,
            requested_at: Some(t - rng.random_range(60_000..86_400_000)),
        },
        97 => EventBody::Return { step: ReturnStep::Requested, reason: Reason::WrongSizeColour, order_paid_at: paid },
        98 => EventBody::Dispute { step: DisputeStep::Opened, reason: Reason::NotReceived, money, order_paid_at: paid },
        _ => EventBody::Chargeback {
            step: ChargebackStep::Received,
            category: ChargebackCategory::Fraud,
            reason: Reason::UnauthorisedCardUse,
            money,
            order_paid_at: paid,
        },
    }
}

/// `n` events over `span_ms` of event time (in order, with a little jitter),
/// for shops drawn by `pick`.
pub fn events(n: usize, span_ms: i64, seed: u64, mut pick: impl FnMut(&mut StdRng) -> usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let t = T0 + (i as i64 * span_ms) / n as i64 - rng.random_range(0..2_000);
            let shop = pick(&mut rng);
            Event {
                event_id: format!("ev-{seed}-{i}"),
                shop_id: format!("shop-{shop:07}"),
                order_id: format!("o-{i}"),
                sub_order_id: None,
                event_time: t,
                category: ["apparel", "electronics", "beauty", "home", "food", "toys"][shop % 6].to_string(),
                body: body(&mut rng, t),
            }
        })
        .collect()
}

/// A few hot shops (peak-night head of the distribution).
pub fn hot_mix(n: usize) -> Vec<Event> {
    events(n, 3_600_000, 1, |rng| rng.random_range(0..8))
}

/// Zipf (s = 1.1) popularity over `shops` shops.
pub fn zipf_mix(n: usize, shops: usize, span_ms: i64, seed: u64) -> Vec<Event> {
    let zipf = Zipf::new(shops as f64, 1.1).expect("valid zipf");
    events(n, span_ms, seed, move |rng| (zipf.sample(rng) as usize - 1).min(shops - 1))
}

/// One order per shop in `ranks` (created, paid, dispatched), at random times in `span_ms`.
pub fn every_shop_once(ranks: std::ops::Range<usize>, span_ms: i64, seed: u64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::with_capacity(ranks.len() * 3);
    for shop in ranks {
        let t = T0 + rng.random_range(0..span_ms);
        let money = Money { amount_minor: 9_900, currency: *b"CNY" };
        let bodies = [
            EventBody::Order { step: OrderStep::Created, cancelled_by: None, money },
            EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money },
            EventBody::Shipment { step: ShipmentStep::Dispatched, promised_by: Some(t + 3_600_000) },
        ];
        for (k, body) in bodies.into_iter().enumerate() {
            out.push(Event {
                event_id: format!("once-{shop}-{k}"),
                shop_id: format!("shop-{shop:07}"),
                order_id: format!("once-{shop}"),
                sub_order_id: None,
                event_time: t + k as i64 * 1_000,
                category: ["apparel", "electronics", "beauty", "home", "food", "toys"][shop % 6].to_string(),
                body,
            });
        }
    }
    out
}
