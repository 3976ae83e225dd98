//! Several workers in one process (`kafka.workers`), on librdkafka's
//! in-process cluster: three workers split four partitions and page exactly
//! as one worker does, category and platform rules included (their counts
//! are the sums of every worker's shops).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use peakguard::codec::SchemaStore;
use peakguard::config::Config;
use peakguard::event::Event;
use peakguard::rules::Scope;
use rdkafka::mocking::MockCluster;

use common::*;

/// 24 small shops in "apparel", each far under the shop rule's volume floor
/// (15 orders and 4 refunds in the 5 min window): only their sum, the
/// category (and the platform), breaches. One big shop in "toys" spikes on
/// its own (and so does its category, which it is all of).
fn events() -> Vec<Event> {
    let mut events = Vec::new();
    for s in 0..24 {
        let shop = format!("small-{s}");
        events.extend(orders(&shop, 3, 10));
        for i in 0..4 {
            events.push(refund(&shop, i, T0 + 9 * MINUTE + 20_000 + i as i64 * 1_000));
        }
    }
    let mut toys = orders("shop-spike", 10, 10);
    for i in 0..40 {
        toys.push(refund("shop-spike", i, T0 + 9 * MINUTE + i as i64 * 1_000));
    }
    for e in &mut toys {
        e.category = "toys".into();
    }
    events.extend(toys);
    events.sort_by_key(|e| e.event_time);
    events
}

/// The runs' logs, shown for a failing test.
fn logs() {
    let _ =
        tracing_subscriber::fmt().with_env_filter("info,librdkafka=warn,rdkafka=warn").with_test_writer().try_init();
}

/// Each run (group) its own alerts topic unless `alerts` names one.
fn config(brokers: &str, group: &str, workers: usize) -> Config {
    config_with_alerts(brokers, group, workers, &format!("{ALERTS}.{group}"))
}

fn config_with_alerts(brokers: &str, group: &str, workers: usize, alerts: &str) -> Config {
    let mut cfg = cluster_config(brokers, group);
    cfg.kafka.workers = workers;
    cfg.kafka.alerts_topic = alerts.into();
    // Event time alone moves the watermark: the in-process cluster now and
    // then takes some 40 s over a rebalance (a worker's partitions revoked,
    // the next assignment late), and the idle timeout would move the
    // watermark past buckets other partitions have not been read into yet.
    cfg.engine.idle_timeout = std::time::Duration::from_secs(3600);
    // Fetches that come back at once, empty or not: the workers' first
    // records then arrive far apart (one may have read all of its
    // partitions before another's first fetch returns), which the merge of
    // their category shares must wait out.
    cfg.kafka.properties.insert("fetch.wait.max.ms".into(), "10".into());
    let shop = cfg.rules[0].clone();
    let mut category = shop.clone();
    category.name = "category_refunds".into();
    category.scope = Scope::Category;
    let mut platform = shop.clone();
    platform.name = "platform_refunds".into();
    platform.scope = Scope::Platform;
    cfg.rules = vec![shop, category, platform];
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_page_as_one() {
    logs();
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in [(ORDERS, 4), (REFUNDS, 4), (DLQ, 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    for group in ["w-one", "w-three"] {
        cluster.create_topic(&format!("{ALERTS}.{group}"), 1, 1).expect("create topic");
    }
    let store = Arc::new(SchemaStore::embedded());
    let events = events();
    produce(&cluster.bootstrap_servers(), &store, &events).await;

    let one = run_to_end(config(&cluster.bootstrap_servers(), "w-one", 1), store.clone()).await;
    let three = run_to_end(config(&cluster.bootstrap_servers(), "w-three", 3), store).await;

    for s in [&one, &three] {
        assert_eq!(s.report.records, events.len() as u64, "every record read once");
        assert_eq!(s.report.stats.folded, events.len() as u64);
        assert_eq!(s.report.shops, 25);
        assert_eq!(s.metrics.shops.get(), 25, "peakguard_shops adds up over workers");
    }
    let pages = |s: &peakguard::runtime::RunSummary| -> BTreeSet<String> {
        s.alerts
            .iter()
            .map(|a| format!("{} {} {} {:?} {}/{}", a.rule, a.scope, a.target(), a.status, a.numerator, a.denominator))
            .collect()
    };
    let expected: BTreeSet<String> = [
        "category_refunds category apparel Firing 96/360",
        "category_refunds category toys Firing 40/50",
        "platform_refunds platform platform Firing 136/410",
        "refund_rate_spike shop shop-spike Firing 40/50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(pages(&one), expected, "one worker");
    assert_eq!(pages(&three), expected, "three workers");
    assert_eq!(three.alerts.len(), 4, "each incident paged once: {:#?}", three.alerts);

    // Dashboards see the category and the platform whole, not one worker's share.
    for series in [
        r#"peakguard_business_denominator{scope="category",category="apparel",metric="refund_rate",window="5m"}"#,
        r#"peakguard_business_denominator{scope="platform",category="",metric="refund_rate",window="5m"}"#,
        r#"peakguard_alerts_firing{rule="category_refunds",severity="page"}"#,
        r#"peakguard_alerts_firing{rule="refund_rate_spike",severity="page"}"#,
    ] {
        let (a, b) = (one.metrics.sample(series), three.metrics.sample(series));
        assert!(a.is_some_and(|v| v > 0.0), "{series}: {a:?}");
        assert_eq!(a, b, "{series}");
    }
    assert_eq!((one.workers, three.workers), (1, 3));
    // No worker's share was left out: one whose first fetch came back after
    // the others had read everything still held the merge back.
    for reason in ["late_read", "bucket_skipped"] {
        let series = format!(r#"peakguard_scope_merge_dropped_total{{reason="{reason}"}}"#);
        assert_eq!(three.metrics.sample(&series), Some(0.0), "{series}");
    }
    for s in [&one, &three] {
        let assigned = s.metrics.sample(r#"peakguard_partitions_assigned{topic="t.orders"}"#);
        assert_eq!(assigned, Some(4.0), "the workers' partitions add up to the topic's");
    }
}

/// Catch-up runs over the same log and the same alerts topic: the later
/// runs restore the first run's four alerts, and as their last buckets keep
/// every one of them firing, none is resolved (before, "resolved" went out
/// while the last, partial bucket was still to be evaluated, and then the
/// alert fired again). Each goes out once more only as a repeat of the
/// incident the first run paged, with its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_catch_up_run_resolves_nothing_and_pages_only_repeats() {
    logs();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let alerts = format!("{ALERTS}.again");
    for (t, p) in [(ORDERS, 4), (REFUNDS, 4), (DLQ, 1), (alerts.as_str(), 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    let store = Arc::new(SchemaStore::embedded());
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, &store, &events()).await;
    let first = run_to_end(config_with_alerts(&brokers, "again-0", 3, &alerts), store.clone()).await;
    assert_eq!(first.alerts.len(), 4, "{:#?}", first.alerts);
    let incidents = |s: &peakguard::runtime::RunSummary| -> BTreeSet<String> {
        s.alerts.iter().map(|a| format!("{} {:?} {}", a.fingerprint, a.status, a.starts_at)).collect()
    };
    for (group, workers) in [("again-1", 1), ("again-3", 3)] {
        let again = run_to_end(config_with_alerts(&brokers, group, workers, &alerts), store.clone()).await;
        assert_eq!(again.report.records, first.report.records, "{group} read the whole log");
        assert_eq!(incidents(&again), incidents(&first), "{group} ({workers} workers): {:#?}", again.alerts);
        assert!(again.alerts.iter().all(|a| a.repeat), "{group}: only repeats: {:#?}", again.alerts);
    }
}
