//! The repartition stage on librdkafka's in-process cluster: refunds keyed
//! by order id are re-keyed by shop into the refunds topic, on the partition
//! the shop's orders are on (same partitioner), and folded with them;
//! a record without a readable shop id is dead-lettered.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use peakguard::codec::SchemaStore;
use peakguard::config::Repartition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use common::*;

const BY_ORDER: &str = "t.refunds-by-order";

/// (key, partition) of every record of `topic` (partitions 0..n).
fn keys_and_partitions(brokers: &str, topic: &str, n: i32) -> Vec<(String, i32)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "it-keys")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut ended = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ended < n {
        assert!(std::time::Instant::now() < deadline, "{topic} not read to its end within 20 s");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(), m.partition())),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_keyed_by_order_are_rekeyed_by_shop_and_folded() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in [(ORDERS, 2), (REFUNDS, 2), (BY_ORDER, 3), (ALERTS, 1), (DLQ, 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    let brokers = cluster.bootstrap_servers();
    let store = Arc::new(SchemaStore::embedded());
    let shops: Vec<String> = (0..8).map(|i| format!("shop-{i}")).collect();
    let mut orders_sent = Vec::new();
    for s in &shops {
        orders_sent.extend(common::orders(s, 3, 2));
    }
    produce(&brokers, &store, &orders_sent).await;
    // Refunds keyed by order id, as an order service would write them.
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
    let mut refunds = 0;
    for (i, s) in shops.iter().enumerate() {
        for n in 0..3 {
            let e = refund(s, n, T0 + MINUTE + (i * 3 + n) as i64 * 1_000);
            let bytes = store.encode(&e).unwrap();
            producer
                .send(FutureRecord::to(BY_ORDER).key(&e.order_id).payload(&bytes), Duration::from_secs(5))
                .await
                .unwrap();
            refunds += 1;
        }
    }
    producer
        .send(FutureRecord::to(BY_ORDER).key("order-x").payload(b"not avro"), Duration::from_secs(5))
        .await
        .unwrap();

    let mut cfg = cluster_config(&brokers, "it-repartition");
    // The test's producers are librdkafka clients: their partitioner.
    cfg.kafka.repartition =
        vec![Repartition { source: BY_ORDER.into(), target: REFUNDS.into(), partitioner: "consistent_random".into() }];
    let summary = run_to_end(cfg, store).await;

    let r = &summary.report;
    assert_eq!(r.stats.folded, orders_sent.len() as u64 + refunds, "every order and re-keyed refund folded");
    assert_eq!(summary.metrics.repartitioned.with_label_values(&[REFUNDS]).get(), refunds);
    let dead = read_all(&brokers, DLQ);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].2.get("peakguard.source.topic").map(String::as_str), Some(BY_ORDER));
    assert_eq!(dead[0].2.get("peakguard.reason").map(String::as_str), Some("bad_magic"));

    // Co-partitioned: each shop's refunds sit on its orders' partition.
    let order_partition: HashMap<String, i32> = keys_and_partitions(&brokers, ORDERS, 2).into_iter().collect();
    let rekeyed = keys_and_partitions(&brokers, REFUNDS, 2);
    assert_eq!(rekeyed.len() as u64, refunds);
    let partitions_used: std::collections::HashSet<i32> = rekeyed.iter().map(|(_, p)| *p).collect();
    assert_eq!(partitions_used.len(), 2, "shops spread over both partitions");
    for (shop, p) in &rekeyed {
        assert_eq!(order_partition.get(shop), Some(p), "{shop}'s refunds are on its orders' partition");
    }
}
