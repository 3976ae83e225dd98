//! Helpers shared by the tests: events of one shop, a minute of its trade
//! folded into a pipeline, alerts by incident, and (for the tests that run
//! on librdkafka's in-process cluster) reading a topic back.
#![allow(dead_code)]

pub mod server;
pub mod tansu;

use std::collections::HashMap;
use std::time::Duration;

use peakguard::event::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub const ORDERS: &str = "t.orders";
pub const REFUNDS: &str = "t.refunds";
pub const ALERTS: &str = "t.alerts";
pub const DLQ: &str = "t.dead-letter";
/// 2026-11-11T00:00:00+08:00, on a minute boundary.
pub const T0: Millis = 1_794_326_400_000;
pub const MINUTE: Millis = 60_000;

pub fn order(shop: &str, n: usize, t: Millis) -> Event {
    Event {
        event_id: format!("{shop}-o{n}"),
        shop_id: shop.into(),
        order_id: format!("{shop}-order-{n}"),
        sub_order_id: None,
        event_time: t,
        category: "apparel".into(),
        body: EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money: Money::new(9_900, "CNY").unwrap() },
    }
}

pub fn refund(shop: &str, n: usize, t: Millis) -> Event {
    Event {
        event_id: format!("{shop}-r{n}"),
        shop_id: shop.into(),
        order_id: format!("{shop}-order-{n}"),
        sub_order_id: None,
        event_time: t,
        category: "apparel".into(),
        body: EventBody::Refund {
            step: RefundStep::Requested,
            refund_type: RefundType::RefundOnly,
            stage: RefundStage::PreShipment,
            reason: Reason::NotAsDescribed,
            money: Money::new(9_900, "CNY").unwrap(),
            order_paid_at: t - MINUTE,
            requested_at: None,
        },
    }
}

/// Every alert transition, by fingerprint, in the order emitted: what two
/// runs that must raise the same alerts are compared by.
pub fn by_incident(alerts: &[peakguard::rules::Alert]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for a in alerts {
        out.entry(a.fingerprint.clone()).or_default().push(format!(
            "{:?} {} {:?} {}/{} {}",
            a.status, a.starts_at, a.ends_at, a.numerator, a.denominator, a.window
        ));
    }
    out
}

/// Minute `m` (from [`T0`]) of one shop's trade, folded into `p` at
/// processing time `now`: `orders` orders a second apart from the minute's
/// start, then `refunds` refunds a second apart from 30 s into it, numbered
/// from `*n` on and made by `ev` (number, event time, refund or not).
pub fn trade_minute(
    p: &mut peakguard::pipeline::Pipeline,
    source: peakguard::engine::SourceId,
    m: i64,
    (orders, refunds): (i64, i64),
    n: &mut usize,
    now: Millis,
    ev: impl Fn(usize, Millis, bool) -> Event,
) {
    for i in 0..orders {
        p.ingest(source, &ev(*n, T0 + m * MINUTE + i * 1_000, false), now);
        *n += 1;
    }
    for i in 0..refunds {
        p.ingest(source, &ev(*n, T0 + m * MINUTE + 30_000 + i * 1_000, true), now);
        *n += 1;
    }
}

/// Orders spread evenly over `minutes` minutes, `per_minute` each.
pub fn orders(shop: &str, per_minute: usize, minutes: i64) -> Vec<Event> {
    let mut v = Vec::new();
    for m in 0..minutes {
        for i in 0..per_minute {
            let t = T0 + m * MINUTE + (i as i64 * MINUTE) / per_minute as i64;
            v.push(order(shop, v.len(), t));
        }
    }
    v
}

pub type Record = (Option<Vec<u8>>, Vec<u8>, HashMap<String, String>);

/// Every record of partition 0 of `topic`, from the beginning.
pub fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "it-reader")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.key().map(<[u8]>::to_vec), m.payload().unwrap_or_default().to_vec(), headers));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            _ => {}
        }
    }
    panic!("no end of partition on {topic} within 20 s");
}

/// Produces `events` (Avro, Confluent framing) keyed by shop id: orders to
/// [`ORDERS`], everything else to [`REFUNDS`].
pub async fn produce(brokers: &str, store: &peakguard::codec::SchemaStore, events: &[Event]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("producer");
    for e in events {
        let topic = if e.kind() == EventKind::Order { ORDERS } else { REFUNDS };
        let bytes = store.encode(e).expect("encode");
        producer
            .send(FutureRecord::to(topic).key(&e.shop_id).payload(&bytes), Duration::from_secs(5))
            .await
            .expect("produce");
    }
}

/// A config for the in-process cluster at `brokers`: [`ORDERS`] and
/// [`REFUNDS`], alerts to [`ALERTS`], dead letters to [`DLQ`]; defaults
/// otherwise.
pub fn cluster_config(brokers: &str, group: &str) -> peakguard::config::Config {
    let mut cfg = peakguard::config::Config::with_defaults();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.group_id = group.to_string();
    cfg.kafka.topics = vec![ORDERS.into(), REFUNDS.into()];
    cfg.kafka.alerts_topic = ALERTS.into();
    cfg.kafka.dead_letter_topic = DLQ.into();
    quick_group(&mut cfg);
    cfg
}

/// A 6 s session: now and then the in-process cluster waits for a member
/// that does not rejoin a rebalance until its session ends (45 s by
/// default; seen with several workers per process). Not found why.
pub fn quick_group(cfg: &mut peakguard::config::Config) {
    cfg.kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    cfg.kafka.properties.insert("heartbeat.interval.ms".into(), "500".into());
}

/// Runs `cfg` until every partition is read to its end (180 s at most).
pub async fn run_to_end(
    cfg: peakguard::config::Config,
    store: std::sync::Arc<peakguard::codec::SchemaStore>,
) -> peakguard::runtime::RunSummary {
    use peakguard::runtime::{self, RunOptions};
    cfg.validate().expect("valid config");
    let opts = RunOptions {
        worker: peakguard::source::WorkerOptions { exit_when_caught_up: true, ..Default::default() },
        ..RunOptions::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    // The in-process cluster now and then takes some 40 s over a rebalance.
    tokio::time::timeout(Duration::from_secs(180), runtime::run(cfg, store, stop, opts, None))
        .await
        .expect("the worker catches up and stops within 180 s")
        .expect("run succeeds")
}
