//! The window engine against a naive reference model: random streams with
//! out-of-order, late, future, duplicate and cohort-attributed events are
//! folded into the engine, and every counter of every window of every shop,
//! category and the platform is compared with a recomputation from the raw
//! list of accepted events, at every end bucket the engine can read exactly.

use std::collections::{HashMap, HashSet};

use peakguard::engine::counts::{completion_bin, hist_field};
use peakguard::engine::window::bucket_of;
use peakguard::engine::{
    Counts, Engine, EngineConfig, Field, Fold, ShardSnapshot, SourceId, WindowSpec, BASELINE_BUCKETS, NF,
};
use peakguard::event::*;
use proptest::prelude::*;

const T0: Millis = 1_794_326_400_000;
const MIN: Millis = 60_000;
const LATENESS: Millis = 5 * MIN;
const MAX_FUTURE: Millis = 6 * 60 * MIN;

fn config() -> EngineConfig {
    let w = |name: &str, size: Millis, step: Millis| WindowSpec { name: name.into(), size_ms: size, step_ms: step };
    EngineConfig {
        windows: vec![w("10m", 10 * MIN, MIN), w("2h", 120 * MIN, 20 * MIN), w("1d", 1440 * MIN, 240 * MIN)],
        allowed_lateness_ms: LATENESS,
        idle_timeout_ms: i64::MAX / 4,
        max_future_ms: MAX_FUTURE,
        dedup_horizon_ms: 100 * 1440 * MIN,
        dedup_capacity: 1_000_000,
        expected_shops: 0,
    }
}

const SHOPS: [(&str, &str); 4] = [("s0", "apparel"), ("s1", "apparel"), ("s2", "toys"), ("s3", "toys")];

/// One generated event: (shop, body selector, clock step, backwards jitter,
/// cohort lag, duplicate-of selector).
#[derive(Clone, Debug)]
struct Gen {
    shop: usize,
    kind: u8,
    step: i64,
    jitter: i64,
    lag: i64,
    dup: Option<prop::sample::Index>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        0usize..4,
        0u8..16,
        prop_oneof![4 => 0i64..3 * MIN, 1 => 0i64..6 * 60 * MIN],
        prop_oneof![6 => Just(0i64), 3 => 0i64..20 * MIN, 1 => 0i64..3 * 1440 * MIN],
        0i64..3 * 1440 * MIN,
        prop::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(shop, kind, step, jitter, lag, dup)| Gen { shop, kind, step, jitter, lag, dup })
}

fn make(g: &Gen, n: usize, t: Millis) -> Event {
    let money = Money::new(1_000 + n as i64, "CNY").unwrap();
    let paid = t - g.lag;
    let reason = Reason::ALL[n % Reason::ALL.len()];
    let body = match g.kind {
        0 => EventBody::Order { step: OrderStep::Created, cancelled_by: None, money },
        1 | 2 => EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money },
        3 => EventBody::Order { step: OrderStep::Cancelled, cancelled_by: Some(CancelledBy::Seller), money },
        4 => EventBody::Order { step: OrderStep::Cancelled, cancelled_by: Some(CancelledBy::Buyer), money },
        5 => EventBody::Shipment {
            step: ShipmentStep::Dispatched,
            promised_by: Some(t - 30 * MIN + (n as i64 % 3) * 30 * MIN),
        },
        6 => EventBody::Shipment { step: ShipmentStep::Delivered, promised_by: None },
        7 => EventBody::Return { step: ReturnStep::Requested, reason, order_paid_at: paid },
        8 | 9 => EventBody::Refund {
            step: RefundStep::Requested,
            refund_type: RefundType::RefundOnly,
            stage: RefundStage::PreShipment,
            reason,
            money,
            order_paid_at: paid,
            requested_at: None,
        },
        10 => EventBody::Refund {
            step: RefundStep::Completed,
            refund_type: if n.is_multiple_of(2) { RefundType::RefundOnly } else { RefundType::ReturnAndRefund },
            stage: RefundStage::AfterDelivery,
            reason,
            money,
            order_paid_at: paid,
            requested_at: Some(t - (n as i64 % 50) * 7 * MIN),
        },
        11 => EventBody::Dispute { step: DisputeStep::Opened, reason, money, order_paid_at: paid },
        12 => EventBody::Dispute { step: DisputeStep::RuledForBuyer, reason, money, order_paid_at: paid },
        13 => EventBody::Chargeback {
            step: ChargebackStep::Received,
            category: if n.is_multiple_of(2) { ChargebackCategory::Fraud } else { ChargebackCategory::Service },
            reason,
            money,
            order_paid_at: paid,
        },
        14 => EventBody::Shipment { step: ShipmentStep::InTransit, promised_by: None },
        _ => EventBody::Dispute { step: DisputeStep::RuledForSeller, reason, money, order_paid_at: paid },
    };
    let (shop, category) = SHOPS[g.shop];
    Event {
        event_id: format!("e{n}"),
        shop_id: shop.into(),
        order_id: format!("o{n}"),
        sub_order_id: None,
        event_time: t,
        category: category.into(),
        body,
    }
}

/// The reference's own reading of DOMAIN.md: (field index, value, credited time).
fn contributions(e: &Event) -> Vec<(usize, u64, Millis)> {
    let t = e.event_time;
    let mut v = Vec::new();
    fn both(v: &mut Vec<(usize, u64, Millis)>, t: Millis, act: Field, cohort: Field, paid: Millis) {
        v.push((act as usize, 1, t));
        v.push((cohort as usize, 1, paid.min(t)));
    }
    match &e.body {
        EventBody::Order { step: OrderStep::Created, .. } => v.push((Field::OrdersCreated as usize, 1, t)),
        EventBody::Order { step: OrderStep::Paid, .. } => v.push((Field::OrdersPaid as usize, 1, t)),
        EventBody::Order { step: OrderStep::Cancelled, cancelled_by: Some(CancelledBy::Seller), .. } => {
            v.push((Field::SellerCancels as usize, 1, t))
        }
        EventBody::Shipment { step: ShipmentStep::Dispatched, promised_by } => {
            v.push((Field::Dispatched as usize, 1, t));
            if promised_by.is_some_and(|p| t > p) {
                v.push((Field::DispatchedLate as usize, 1, t));
            }
        }
        EventBody::Shipment { step: ShipmentStep::Delivered, .. } => v.push((Field::Delivered as usize, 1, t)),
        EventBody::Return { step: ReturnStep::Requested, order_paid_at, .. } => {
            both(&mut v, t, Field::ReturnsRequested, Field::ReturnsRequestedCohort, *order_paid_at)
        }
        EventBody::Refund { step: RefundStep::Requested, reason, order_paid_at, .. } => {
            both(&mut v, t, Field::RefundsRequested, Field::RefundsRequestedCohort, *order_paid_at);
            if matches!(reason, Reason::NotAsDescribed | Reason::QualityDamaged) {
                both(&mut v, t, Field::QualityRefunds, Field::QualityRefundsCohort, *order_paid_at);
            }
            if *reason == Reason::NotReceived {
                both(&mut v, t, Field::NotReceivedClaims, Field::NotReceivedClaimsCohort, *order_paid_at);
            }
        }
        EventBody::Refund { step: RefundStep::Completed, money, requested_at, refund_type, .. } => {
            v.push((Field::RefundsCompleted as usize, 1, t));
            v.push((Field::RefundAmountMinor as usize, money.amount_minor as u64, t));
            if let Some(r) = requested_at {
                v.push((hist_field(*refund_type, completion_bin(t - r)), 1, t));
            }
        }
        EventBody::Dispute { step: DisputeStep::Opened, reason, order_paid_at, .. } => {
            v.push((Field::DisputesOpened as usize, 1, t));
            v.push((Field::DefectsCohort as usize, 1, (*order_paid_at).min(t)));
            if *reason == Reason::NotReceived {
                both(&mut v, t, Field::NotReceivedClaims, Field::NotReceivedClaimsCohort, *order_paid_at);
            }
        }
        EventBody::Dispute { step: DisputeStep::RuledForBuyer, order_paid_at, .. } => {
            both(&mut v, t, Field::DisputesForBuyer, Field::DisputesForBuyerCohort, *order_paid_at)
        }
        EventBody::Chargeback { step: ChargebackStep::Received, category, order_paid_at, .. } => {
            v.push((Field::DefectsCohort as usize, 1, (*order_paid_at).min(t)));
            match category {
                ChargebackCategory::Fraud => {
                    both(&mut v, t, Field::ChargebacksFraud, Field::ChargebacksFraudCohort, *order_paid_at)
                }
                _ => both(&mut v, t, Field::ChargebacksService, Field::ChargebacksServiceCohort, *order_paid_at),
            }
        }
        _ => {}
    }
    v
}

struct Reference {
    accepted: Vec<Event>,
    rejected: HashMap<&'static str, u64>,
}

/// Acceptance as specified: future (vs newest seen) -> late (vs the watermark
/// at the last tick minus the longest window) -> duplicate (id seen before).
fn reference(stream: &[(Event, bool)]) -> Reference {
    let retention = 1440 * MIN;
    let (mut max_seen, mut wm): (Option<Millis>, Option<Millis>) = (None, None);
    let mut ids = HashSet::new();
    let mut r = Reference { accepted: Vec::new(), rejected: HashMap::new() };
    for (e, tick_after) in stream {
        let t = e.event_time;
        if max_seen.is_some_and(|m| t > m + MAX_FUTURE) {
            *r.rejected.entry("future").or_default() += 1;
        } else {
            max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
            if wm.is_some_and(|w| t < w - retention) {
                *r.rejected.entry("late").or_default() += 1;
            } else if !ids.insert(e.event_id.clone()) {
                *r.rejected.entry("duplicate").or_default() += 1;
            } else {
                r.accepted.push(e.clone());
            }
        }
        if *tick_after {
            if let Some(m) = max_seen {
                wm = Some(wm.map_or(m - LATENESS, |w| w.max(m - LATENESS)));
            }
        }
    }
    r
}

fn check_scope(
    engine_read: impl Fn(usize, i64) -> Counts,
    events: &[&Event],
    windows: &[WindowSpec],
    slack: impl Fn(usize) -> usize,
    what: &str,
) -> Result<(), TestCaseError> {
    let with_deltas: Vec<&&Event> = events.iter().filter(|e| !contributions(e).is_empty()).collect();
    if with_deltas.is_empty() {
        return Ok(());
    }
    for (w, spec) in windows.iter().enumerate() {
        let head = with_deltas.iter().map(|e| bucket_of(e.event_time, spec.step_ms)).max().unwrap();
        let len = spec.buckets() as i64;
        for end in head - slack(w) as i64..=head + len {
            let mut expect = [0u64; NF];
            for e in events {
                for (f, v, at) in contributions(e) {
                    let b = bucket_of(at, spec.step_ms);
                    if b <= end && b > end - len {
                        expect[f] += v;
                    }
                }
            }
            let got = engine_read(w, end);
            prop_assert_eq!(&got.0[..], &expect[..], "{} window {} end {} (head {})", what, spec.name, end, head);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_matches_reference(gens in proptest::collection::vec(gen(), 1..250), ticks in proptest::collection::vec(any::<bool>(), 250)) {
        // Build the stream: a clock that moves forward, events jittered back
        // from it, and some exact repeats of earlier events.
        let mut clock = T0;
        let mut stream: Vec<(Event, bool)> = Vec::new();
        for (n, g) in gens.iter().enumerate() {
            clock += g.step;
            let e = match (&g.dup, stream.is_empty()) {
                (Some(i), false) => stream[i.index(stream.len())].0.clone(),
                _ => make(g, n, clock - g.jitter),
            };
            stream.push((e, ticks[n]));
        }
        // A far-future event now and then exercises the future check.
        if gens.len() > 10 {
            let mut e = stream[5].0.clone();
            e.event_id = "far-future".into();
            e.event_time = clock + 2 * MAX_FUTURE;
            stream.insert(6, (e, false));
        }

        let cfg = config();
        let windows = cfg.windows.clone();
        let mut engine = Engine::new(cfg);
        let src = SourceId(0);
        engine.watermark_mut().assign(src, 0);
        let mut counted: HashMap<&'static str, u64> = HashMap::new();
        for (e, tick_after) in &stream {
            let fold = engine.fold(src, e, 0);
            *counted.entry(fold.label()).or_default() += 1;
            if *tick_after {
                engine.update_watermark(0);
            }
        }
        let r = reference(&stream);
        for label in ["late", "duplicate", "future"] {
            prop_assert_eq!(counted.get(label).copied().unwrap_or(0), r.rejected.get(label).copied().unwrap_or(0), "{}", label);
        }
        prop_assert_eq!(
            counted.get("folded").copied().unwrap_or(0) + counted.get("ignored").copied().unwrap_or(0),
            r.accepted.len() as u64
        );

        for (shop, category) in SHOPS {
            let events: Vec<&Event> = r.accepted.iter().filter(|e| e.shop_id == shop).collect();
            if let Some(state) = engine.shop(shop) {
                prop_assert_eq!(engine.shop_category(shop), Some(category));
                // Shops through `read_to` into a buffer holding garbage (it
                // must overwrite every counter), aggregates through `read`.
                let read_to = |w, end| {
                    let mut out = Counts([u64::MAX / 3; NF]);
                    state.read_to(w, end, &mut out);
                    out
                };
                check_scope(read_to, &events, &windows, |w| engine.slack(w) + BASELINE_BUCKETS, shop)?;
            } else {
                prop_assert!(events.iter().all(|e| contributions(e).is_empty()), "{} missing", shop);
            }
        }
        for category in ["apparel", "toys"] {
            let events: Vec<&Event> = r.accepted.iter().filter(|e| e.category == category).collect();
            if let Some(scope) = engine.category(category) {
                check_scope(|w, end| scope.read(w, end), &events, &windows, |w| engine.slack(w) + BASELINE_BUCKETS, category)?;
            }
        }
        let all: Vec<&Event> = r.accepted.iter().collect();
        if let Some(platform) = engine.platform() {
            check_scope(|w, end| platform.read(w, end), &all, &windows, |w| engine.slack(w) + BASELINE_BUCKETS, "platform")?;
        }
    }
}

#[test]
fn idle_shops_are_evicted_once_their_windows_drain() {
    let mut engine = Engine::new(EngineConfig { max_future_ms: 7 * 1440 * MIN, ..config() });
    let src = SourceId(0);
    engine.watermark_mut().assign(src, 0);
    let g = Gen { shop: 0, kind: 1, step: 0, jitter: 0, lag: 0, dup: None };
    assert_eq!(engine.fold(src, &make(&g, 0, T0), 0), Fold::Folded);
    let later = Gen { shop: 2, ..g.clone() };
    assert_eq!(engine.fold(src, &make(&later, 1, T0 + 2 * 1440 * MIN), 0), Fold::Folded);
    engine.update_watermark(0);
    // Both shops are pending until their rules have seen them.
    for w in 0..engine.config().windows.len() {
        engine.drain_pending(w, |_, _, _, _, _| false);
    }
    assert_eq!(engine.evict_idle(), 1, "s0's day-old windows are empty now");
    assert!(engine.shop("s0").is_none() && engine.shop("s2").is_some());
}

/// Every window of every shop, category and the platform, read at every end
/// bucket from `lo` buckets behind `head` to `len` past it.
fn all_reads(engine: &Engine, heads: &[i64]) -> Vec<(String, usize, i64, Counts)> {
    let mut out = Vec::new();
    let mut scopes: Vec<(String, peakguard::engine::ScopeView<'_>)> = Vec::new();
    for (shop, category) in SHOPS {
        scopes.extend(engine.shop(shop).map(|s| (shop.to_string(), s)));
        scopes.extend(engine.category(category).map(|s| (format!("category {category}"), s)));
    }
    scopes.extend(engine.platform().map(|s| ("platform".to_string(), s)));
    for (name, scope) in scopes {
        for (w, &head) in heads.iter().enumerate() {
            let len = engine.config().windows[w].buckets() as i64;
            for end in head - engine.slack(w) as i64..=head + len {
                let c = scope.read(w, end);
                // A scope that exists but is empty reads as one that does not.
                if !c.is_zero() {
                    out.push((name.clone(), w, end, c));
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    out.dedup_by(|a, b| (&a.0, a.1, a.2) == (&b.0, b.1, b.2));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Checkpoint and restore: an engine that exports its shards at a random
    /// point, and a fresh engine that imports them and goes on, end equal to
    /// the engine that never stopped (every read, every fold outcome). Shops
    /// s0, s2 are shard 0 and s1, s3 shard 1, so both categories span shards.
    #[test]
    fn restored_shards_match_the_uninterrupted_engine(
        gens in proptest::collection::vec(gen(), 2..200),
        cut in any::<prop::sample::Index>(),
        drop_one in any::<bool>(),
    ) {
        let mut clock = T0;
        let mut stream: Vec<Event> = Vec::new();
        for (n, g) in gens.iter().enumerate() {
            clock += g.step;
            let e = match (&g.dup, stream.is_empty()) {
                (Some(i), false) => stream[i.index(stream.len())].clone(),
                _ => make(g, n, clock - g.jitter),
            };
            stream.push(e);
        }
        let source = |e: &Event| SourceId(if e.shop_id == "s0" || e.shop_id == "s2" { 0 } else { 1 });
        let setup = |engine: &mut Engine| {
            for s in 0..2u32 {
                engine.set_source_shard(SourceId(s), s);
                engine.watermark_mut().assign(SourceId(s), 0);
            }
        };
        let cut = cut.index(stream.len());
        let mut whole = Engine::new(config());
        setup(&mut whole);
        let mut first = Engine::new(config());
        setup(&mut first);
        for (i, e) in stream[..cut].iter().enumerate() {
            prop_assert_eq!(whole.fold(source(e), e, 0), first.fold(source(e), e, 0));
            if i % 7 == 6 {
                whole.update_watermark(0);
                first.update_watermark(0);
            }
        }
        let wm = first.update_watermark(0);
        whole.update_watermark(0);
        let snaps: Vec<ShardSnapshot> = (0..2).map(|s| first.export_shard(s)).collect();
        let mut restored = Engine::new(config());
        setup(&mut restored);
        for s in 0..2u32 {
            let max = first.watermark().source_max(SourceId(s));
            restored.watermark_mut().restore_source(SourceId(s), max, wm, 0);
            restored.import_shard(snaps[s as usize].clone()).unwrap();
        }
        restored.update_watermark(0);
        for (i, e) in stream.iter().enumerate().skip(cut) {
            prop_assert_eq!(restored.fold(source(e), e, 0), whole.fold(source(e), e, 0), "event {}", i);
            if i % 7 == 6 {
                restored.update_watermark(0);
                whole.update_watermark(0);
            }
        }
        let heads: Vec<i64> = config().windows.iter().map(|w| bucket_of(clock, w.step_ms)).collect();
        prop_assert_eq!(all_reads(&restored, &heads), all_reads(&whole, &heads));
        prop_assert_eq!(restored.export_shard(0).dedup, whole.export_shard(0).dedup);

        // Handing shard 1 away leaves what an engine of shard 0 alone holds.
        if drop_one {
            let mut alone = Engine::new(config());
            setup(&mut alone);
            alone.import_shard(whole.export_shard(0)).unwrap();
            let held = whole.shard_shop_count(1);
            prop_assert_eq!(whole.drop_shard(1), held);
            prop_assert_eq!(whole.shard_shop_count(1), 0);
            prop_assert_eq!(all_reads(&whole, &heads), all_reads(&alone, &heads));
        }
    }
}
