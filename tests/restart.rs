//! A restart, a replay of the backlog or a rebalance never pages twice, on
//! librdkafka's in-process cluster: notifications are held while partitions
//! catch up, and the alerts topic is read back at start.
//!
//! Each run uses a new consumer group, so it re-reads the whole backlog like
//! a worker that lost its state.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use peakguard::codec::SchemaStore;
use peakguard::config::Config;
use peakguard::event::*;
use peakguard::rules::{Alert, AlertStatus};
use peakguard::runtime::{self, RunOptions, RunSummary};
use peakguard::source::WorkerOptions;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

/// `shop`'s minute `m`: 10 orders, and `refunds` refunds.
fn minute(shop: &str, m: i64, refunds: usize) -> Vec<Event> {
    let t = T0 + m * MINUTE;
    let mut v: Vec<Event> = (0..10).map(|i| order(shop, (m * 100 + i) as usize, t + i * 5_000)).collect();
    v.extend((0..refunds).map(|i| refund(shop, (m * 100 + i as i64) as usize, t + 50_000 + i as i64 * 1_000)));
    v
}

async fn run(brokers: &str, group: &str, store: &Arc<SchemaStore>) -> RunSummary {
    let mut cfg = Config::with_defaults();
    cfg.kafka.brokers = brokers.into();
    cfg.kafka.group_id = group.into();
    cfg.kafka.topics = vec![ORDERS.into(), REFUNDS.into()];
    cfg.kafka.alerts_topic = ALERTS.into();
    cfg.kafka.dead_letter_topic = DLQ.into();
    common::quick_group(&mut cfg);
    // Never contacted: a repeat is not sent to webhooks, and nothing else is
    // expected to page twice. Deliveries that do happen fail and are counted.
    cfg.webhook.url = "http://127.0.0.1:9/hook".into();
    cfg.webhook.attempts = 1;
    cfg.validate().expect("valid config");
    let opts =
        RunOptions { worker: WorkerOptions { exit_when_caught_up: true, ..Default::default() }, ..Default::default() };
    tokio::time::timeout(
        Duration::from_secs(90),
        runtime::run(cfg, store.clone(), CancellationToken::new(), opts, None),
    )
    .await
    .expect("the worker catches up and stops within 90 s")
    .expect("run succeeds")
}

fn summary(alerts: &[Alert]) -> Vec<(&str, AlertStatus, bool)> {
    alerts.iter().map(|a| (a.shop_id.as_str(), a.status, a.repeat)).collect()
}

fn metric(s: &RunSummary, line_start: &str) -> String {
    let text = s.metrics.render();
    text.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("no {line_start} in\n{text}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_replays_never_page_twice() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,rdkafka=warn").with_test_writer().try_init();
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in [(ORDERS, 2), (REFUNDS, 2), (ALERTS, 1), (DLQ, 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    let brokers = cluster.bootstrap_servers();
    let store = Arc::new(SchemaStore::embedded());
    // "spike" refunds 8 of 10 orders a minute from minute 10 on; "blip" only
    // in minutes 2-3, so its alert fires and resolves inside the backlog.
    let mut events = Vec::new();
    for m in 0..20 {
        events.extend(minute("spike", m, if m >= 10 { 8 } else { 0 }));
        events.extend(minute("blip", m, if (2..4).contains(&m) { 8 } else { 0 }));
    }
    events.sort_by_key(|e| e.event_time);
    produce(&brokers, &store, &events).await;

    // Run 1 starts on a backlog: the blip is held and dropped; the spike,
    // still firing when the backlog is read, is sent once.
    let first = run(&brokers, "g1", &store).await;
    assert_eq!(summary(&first.alerts), vec![("spike", AlertStatus::Firing, false)], "{:#?}", first.alerts);
    let held = metric(&first, "peakguard_rules_muted_total{reason=\"catching_up\",rule=\"refund_rate_spike\"}");
    assert!(held.ends_with(" 2"), "spike and blip were held: {held}");
    assert_eq!(read_all(&brokers, ALERTS).len(), 1);

    // Run 2 re-reads everything: the spike fires again, but the alerts topic
    // says it was notified: a repeat with the first start, not a new page.
    let second = run(&brokers, "g2", &store).await;
    assert_eq!(summary(&second.alerts), vec![("spike", AlertStatus::Firing, true)], "{:#?}", second.alerts);
    assert_eq!(second.alerts[0].starts_at, first.alerts[0].starts_at);
    assert_eq!(metric(&second, "peakguard_alerts_restored "), "peakguard_alerts_restored 1");
    let skipped = metric(&second, "peakguard_sink_deliveries_total{result=\"repeat_skipped\",sink=\"webhook\"}");
    assert!(skipped.ends_with(" 1"), "{skipped}");

    // The spike ends; run 3 replays all of it: the spike's new firing and
    // resolution both fall in the backlog, and the alert the topic holds as
    // firing is resolved once.
    let mut calm = Vec::new();
    for m in 20..30 {
        calm.extend(minute("spike", m, 0));
        calm.extend(minute("blip", m, 0));
    }
    produce(&brokers, &store, &calm).await;
    let third = run(&brokers, "g3", &store).await;
    assert_eq!(summary(&third.alerts), vec![("spike", AlertStatus::Resolved, false)], "{:#?}", third.alerts);
    assert_eq!(third.alerts[0].starts_at, first.alerts[0].starts_at);
    assert_eq!(read_all(&brokers, ALERTS).len(), 3, "firing, repeat, resolved");

    // Run 4: nothing firing on the topic any more, nothing to say.
    let fourth = run(&brokers, "g4", &store).await;
    assert!(fourth.alerts.is_empty(), "{:#?}", fourth.alerts);
}
