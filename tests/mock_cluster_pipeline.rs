//! End to end on librdkafka's in-process cluster: Avro events for a spiking
//! shop, a healthy shop and a tiny shop, plus two bad records, go through the
//! real consumer, decoder, engine, rules and Kafka alerts sink.

mod common;

use std::sync::Arc;
use std::time::Duration;

use peakguard::codec::{wire, SchemaStore};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiking_shop_alerts_once_healthy_and_tiny_shops_do_not() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in [(ORDERS, 2), (REFUNDS, 2), (ALERTS, 1), (DLQ, 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    let store = Arc::new(SchemaStore::embedded());

    // Spike: 10 orders/min for 10 min; 40 refunds in the last minute only, so
    // the only window that can breach is the one ending with minute 9:
    // 50 orders (minutes 5..=9) and 40 refunds.
    let mut events = orders("shop-spike", 10, 10);
    for i in 0..40 {
        events.push(refund("shop-spike", i, T0 + 9 * MINUTE + i as i64 * 1_000));
    }
    // Healthy: 20 orders/min, 1 refund/min (5%): volume floors met, bound far below 10%.
    events.extend(orders("shop-healthy", 20, 10));
    for m in 0..10 {
        events.push(refund("shop-healthy", m as usize, T0 + m * MINUTE + 30_000));
    }
    // Tiny: 4 orders, 3 refunds: 75% raw, but under the volume floor.
    for i in 0..4 {
        events.push(order("shop-tiny", i, T0 + 8 * MINUTE + i as i64 * 1_000));
    }
    for i in 0..3 {
        events.push(refund("shop-tiny", i, T0 + 9 * MINUTE + i as i64 * 1_000));
    }
    events.sort_by_key(|e| e.event_time);

    produce(&cluster.bootstrap_servers(), &store, &events).await;
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
    // Two bad records: not Confluent-framed, and an unknown schema id.
    let mut unknown = Vec::new();
    wire::write_header(&mut unknown, 999);
    unknown.extend_from_slice(b"\x02xx");
    for bad in [b"{\"json\": true}".to_vec(), unknown] {
        producer
            .send(FutureRecord::to(REFUNDS).key("shop-spike").payload(&bad), Duration::from_secs(5))
            .await
            .expect("produce");
    }

    let mut cfg = cluster_config(&cluster.bootstrap_servers(), "it-spike");
    // Event time alone moves the watermark here: in two CI runs the run sat
    // about 45 s with a partition quiet, the idle timeout moved the
    // watermark past minute 9 before the refunds were read, and the spike
    // paged a bucket later (40/40) than the one this test is about.
    cfg.engine.idle_timeout = Duration::from_secs(3600);
    let summary = run_to_end(cfg, store).await;

    let r = &summary.report;
    assert_eq!(r.records, events.len() as u64 + 2, "every record read");
    assert_eq!(r.stats.folded, events.len() as u64, "every event folded");
    assert_eq!(r.decode_errors, 2);
    let m = &summary.metrics;
    assert_eq!(m.decode_errors.with_label_values(&["bad_magic"]).get(), 1);
    assert_eq!(m.decode_errors.with_label_values(&["unknown_schema_id"]).get(), 1);

    // Exactly one alert on the alerts topic: firing, for the spiking shop.
    let alerts = read_all(&cluster.bootstrap_servers(), ALERTS);
    assert_eq!(alerts.len(), 1, "one alert, got {alerts:?}");
    let (key, payload, _) = &alerts[0];
    let a: serde_json::Value = serde_json::from_slice(payload).expect("alert is JSON");
    assert_eq!(a["status"], "firing");
    assert_eq!(a["shop_id"], "shop-spike");
    assert_eq!(a["rule"], "refund_rate_spike");
    assert_eq!(a["window"], "5m");
    assert_eq!(a["numerator"], 40, "{a}");
    assert_eq!(a["denominator"], 50, "{a}");
    assert!((a["rate"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{a}");
    let bound = a["wilson_lower_bound"].as_f64().unwrap();
    assert!(bound > 0.1 && bound < 0.8, "{a}");
    assert_eq!(a["window_end"], T0 + 10 * MINUTE, "window ends with minute 9");
    assert_eq!(key.as_deref(), a["fingerprint"].as_str().map(str::as_bytes), "keyed by fingerprint");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(summary.alerts.len(), 1);
    let text = summary.metrics.render();
    for line in [
        "peakguard_alerts_total{rule=\"refund_rate_spike\",severity=\"page\",status=\"firing\"} 1",
        "peakguard_decode_errors_total{reason=\"bad_magic\"} 1",
        "peakguard_dead_letters_total{reason=\"unknown_schema_id\"} 1",
        "peakguard_sink_deliveries_total{result=\"ok\",sink=\"kafka\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    // Platform refund rate over the 5 minutes ending with minute 9: orders paid
    // 50 (spike) + 100 (healthy) + 4 (tiny); refunds 40 + 5 + 3.
    let platform = r#"{scope="platform",category="",metric="refund_rate",window="5m"}"#;
    assert_eq!(m.sample(&format!("peakguard_business_denominator{platform}")), Some(154.0));
    let rate = m.sample(&format!("peakguard_business_rate{platform}")).expect("platform rate");
    assert!((rate - 48.0 / 154.0).abs() < 1e-12, "{rate}");
    let apparel = r#"{scope="category",category="apparel",metric="refund_rate",window="5m"}"#;
    assert_eq!(m.sample(&format!("peakguard_business_denominator{apparel}")), Some(154.0), "all shops are apparel");

    // Both bad records are on the dead-letter topic with their reasons.
    let dead = read_all(&cluster.bootstrap_servers(), DLQ);
    let reasons: Vec<String> =
        dead.iter().map(|(_, _, h)| h.get("peakguard.reason").cloned().unwrap_or_default()).collect();
    assert_eq!(reasons, vec!["bad_magic".to_string(), "unknown_schema_id".to_string()]);
    assert_eq!(dead[0].2.get("peakguard.source.topic").map(String::as_str), Some(REFUNDS));
}
