//! What the platform team sees, end to end: peakguard consumes a spiking
//! shop from librdkafka's in-process cluster while a real Prometheus server
//! (Debian package `prometheus`, started on loopback by this test) scrapes
//! it; the rate series, the alert counter and the top-K are then read back
//! through Prometheus's HTTP query API. The query API is checked on the same
//! run: a shop's windows, firing alerts, the top-K, the rules, the bearer
//! token, and /readyz.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server;
use common::*;
use peakguard::codec::SchemaStore;
use peakguard::config::Config;
use peakguard::runtime::{self, RunOptions};
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "test-token-0123456789abcdef";

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().expect("HTTP request");
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
}

fn json(url: &str) -> Value {
    let (status, body) = get(url, Some(TOKEN));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `f` until it returns Some, for up to `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The value of a one-series instant query, if Prometheus has it.
fn prom_value(prom: &str, query: &str) -> Option<(Value, f64)> {
    prom_value_at(prom, query, None)
}

/// The same at evaluation time `at` (Unix seconds): queries at one time see
/// the same scrape.
fn prom_value_at(prom: &str, query: &str, at: Option<f64>) -> Option<(Value, f64)> {
    let time = at.map(|t| format!("&time={t:.3}")).unwrap_or_default();
    let url = format!("{prom}/api/v1/query?query={}{time}", urlencode(query));
    let (status, body) = get(&url, None);
    assert_eq!(status, 200, "{query}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array()?.first()?.clone();
    let value = result["value"][1].as_str()?.parse().ok()?;
    Some((result["metric"].clone(), value))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_rates_alerts_and_top_k_and_the_query_api_answers() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in [(ORDERS, 2), (REFUNDS, 2), (ALERTS, 1), (DLQ, 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    let store = Arc::new(SchemaStore::embedded());
    // The same traffic as tests/mock_cluster_pipeline.rs: a spike (40 refunds
    // on 50 orders in the last 5 minutes), a healthy shop and a tiny one.
    let mut events = orders("shop-spike", 10, 10);
    events.extend((0..40).map(|i| refund("shop-spike", i, T0 + 9 * MINUTE + i as i64 * 1_000)));
    events.extend(orders("shop-healthy", 20, 10));
    events.extend((0..10).map(|m| refund("shop-healthy", m as usize, T0 + m * MINUTE + 30_000)));
    events.extend((0..4).map(|i| order("shop-tiny", i, T0 + 8 * MINUTE + i as i64 * 1_000)));
    events.extend((0..3).map(|i| refund("shop-tiny", i, T0 + 9 * MINUTE + i as i64 * 1_000)));
    events.sort_by_key(|e| e.event_time);
    produce(&cluster.bootstrap_servers(), &store, &events).await;
    let produced = events.len() as f64;
    // Refunds requested / orders paid of the platform's 5-minute window that
    // ends with the bucket holding `watermark_ms` (what /metrics exports).
    let expected = {
        let events = events.clone();
        move |watermark_ms: i64| {
            let b = watermark_ms.div_euclid(MINUTE);
            let inside =
                |e: &&peakguard::event::Event| (b - 4) * MINUTE <= e.event_time && e.event_time < (b + 1) * MINUTE;
            let kind = |k| events.iter().filter(inside).filter(|e| e.kind() == k).count() as f64;
            let (orders, refunds) =
                (kind(peakguard::event::EventKind::Order), kind(peakguard::event::EventKind::Refund));
            (refunds / orders, orders)
        }
    };

    let mut cfg = Config::with_defaults();
    cfg.kafka.brokers = cluster.bootstrap_servers();
    cfg.kafka.group_id = "it-observability".into();
    common::quick_group(&mut cfg);
    cfg.kafka.topics = vec![ORDERS.into(), REFUNDS.into()];
    cfg.kafka.alerts_topic = ALERTS.into();
    cfg.kafka.dead_letter_topic = DLQ.into();
    // The stream ends: idle partitions stop holding the watermark after 1 s.
    cfg.engine.idle_timeout = Duration::from_secs(1);
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.http.token = TOKEN.into();
    cfg.validate().expect("valid config");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let on_listen: runtime::OnListen = Box::new(move |a| addr_tx.send(a).unwrap());
    let stop = CancellationToken::new();
    let opts = RunOptions { http: true, ..RunOptions::default() };
    let run = tokio::spawn(runtime::run(cfg, store, stop.clone(), opts, Some(on_listen)));
    let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("peakguard listens");
    let base = format!("http://{addr}");

    let checks = tokio::task::spawn_blocking(move || {
        // peakguard has folded everything and fired.
        wait_for(60, "the spike's alert in /metrics", || {
            let (_, text) = get(&format!("{base}/metrics"), None);
            text.lines()
                .any(|l| {
                    l == "peakguard_alerts_total{rule=\"refund_rate_spike\",severity=\"page\",status=\"firing\"} 1"
                })
                .then_some(())
        });
        let (status, _) = get(&format!("{base}/readyz"), None);
        assert_eq!(status, 200, "assigned and caught up");

        // The query API: no token, no answer.
        let (status, body) = get(&format!("{base}/api/v1/alerts"), None);
        assert_eq!(status, 401, "{body}");
        let (status, _) = get(&format!("{base}/api/v1/alerts"), Some("wrong-token-0123456789"));
        assert_eq!(status, 401);
        let alerts = json(&format!("{base}/api/v1/alerts"));
        let firing = alerts["alerts"].as_array().unwrap();
        assert_eq!(firing.len(), 1, "{alerts:#}");
        assert_eq!((firing[0]["shop_id"].as_str(), firing[0]["numerator"].as_u64()), (Some("shop-spike"), Some(40)));
        let shop = json(&format!("{base}/api/v1/shops/shop-spike"));
        let five = &shop["shop"]["windows"]["5m"]["complete"]["refund_rate"];
        assert_eq!((five["numerator"].as_u64(), five["denominator"].as_u64()), (Some(40), Some(50)), "{shop:#}");
        let hour = &shop["shop"]["windows"]["1h"]["current"]["refund_rate"];
        assert_eq!((hour["numerator"].as_u64(), hour["denominator"].as_u64()), (Some(40), Some(100)), "{shop:#}");
        assert_eq!(shop["alerts"].as_array().unwrap().len(), 1);
        let (status, _) = get(&format!("{base}/api/v1/shops/nobody"), Some(TOKEN));
        assert_eq!(status, 404);
        // The top-K is refreshed once a second: wait for the bucket of the alert.
        let top = wait_for(10, "shop-spike on top of the refund rate list", || {
            let top = json(&format!("{base}/api/v1/top?metric=refund_rate&window=5m"));
            (top["top"][0]["entries"][0]["shop_id"] == "shop-spike").then_some(top)
        });
        let entries = top["top"][0]["entries"].as_array().unwrap();
        assert_eq!(entries[0]["shop_id"], "shop-spike", "{top:#}");
        assert!(entries.iter().all(|e| e["shop_id"] != "shop-tiny"), "under the volume floor: {top:#}");
        let rules = json(&format!("{base}/api/v1/rules"));
        assert_eq!(rules["rules"][0]["name"], "refund_rate_spike");
        assert_eq!(rules["rules"][0]["firing"], 1);

        // A real Prometheus scrapes peakguard every second.
        let bin = server::binary("PROMETHEUS_BIN", &["prometheus"], "prometheus");
        let target = addr.to_string();
        let prom = server::start(bin, |dir, port| {
            let config = dir.join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: peakguard\n    \
                     static_configs:\n      - targets: [\"{target}\"]\n"
                ),
            )
            .unwrap();
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        });
        let q = r#"peakguard_business_rate{scope="platform",metric="refund_rate",window="5m"}"#;
        wait_for(60, "the platform refund rate in Prometheus", || prom_value(&prom.url, q));
        // The watermark moves on with wall time once the stream is quiet (so
        // windows drain): compare the rate with the watermark of the same scrape.
        let at = Some(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64());
        let (_, rate) = prom_value_at(&prom.url, q, at).expect("rate");
        let (_, wm) = prom_value_at(&prom.url, "peakguard_watermark_timestamp_seconds", at).expect("watermark");
        let (want, orders) = expected((wm * 1000.0).round() as i64);
        assert!(orders > 0.0 && (rate - want).abs() < 1e-9, "rate {rate}, expected {want} at watermark {wm}");
        let q =
            r#"peakguard_business_denominator{scope="category",category="apparel",metric="refund_rate",window="5m"}"#;
        assert_eq!(prom_value_at(&prom.url, q, at).map(|v| v.1), Some(orders), "all shops are apparel");
        let q = r#"sum(peakguard_alerts_total{status="firing"})"#;
        assert_eq!(prom_value(&prom.url, q).map(|v| v.1), Some(1.0));
        let q = r#"peakguard_alerts_firing{rule="refund_rate_spike",severity="page"}"#;
        assert_eq!(prom_value(&prom.url, q).map(|v| v.1), Some(1.0));
        let q = r#"peakguard_top_shop_bound{metric="refund_rate",window="5m",rank="1"}"#;
        let (labels, bound) = prom_value(&prom.url, q).expect("top-K series");
        assert_eq!(labels["shop_id"], "shop-spike");
        assert!(bound > 0.6 && bound < 0.8, "{bound}");
        let q = r#"sum(peakguard_consumer_lag)"#;
        assert_eq!(prom_value(&prom.url, q).map(|v| v.1), Some(0.0), "caught up");
        let q = r#"sum(peakguard_records_total{topic=~"t.orders|t.refunds"})"#;
        assert_eq!(prom_value(&prom.url, q).map(|v| v.1), Some(produced), "records by topic");
        let q = r#"peakguard_event_latency_seconds_count"#;
        assert_eq!(prom_value(&prom.url, q).map(|v| v.1), Some(produced), "every event's latency observed");
        let q = r#"up{job="peakguard"}"#;
        assert_eq!(prom_value(&prom.url, q).map(|v| v.1), Some(1.0));
    });
    let outcome = checks.await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), run).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
