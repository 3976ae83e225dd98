//! `peakguard demo` end to end, shortened: the in-process cluster, the
//! generator and the processor run together; /metrics is served while it
//! runs; the injected spike is detected and no healthy shop alerts.

use std::sync::mpsc;
use std::time::Duration;

use peakguard::demo::{self, DemoOptions};
use peakguard::generator::{GeneratorConfig, Spike};
use peakguard::rules::AlertStatus;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_detects_the_injected_spike_and_serves_metrics() {
    let generator = GeneratorConfig {
        shops: 2_000,
        duration_ms: 40 * 60_000,
        base_orders_per_sec: 15.0,
        // Early in the simulated 40 min, so a loaded machine whose generator lags
        // wall-clock pacing still reaches well into the spike.
        spike: Some(Spike { shop_rank: 9, starts_after_ms: 15 * 60_000, refund_rate: 0.4 }),
        ..GeneratorConfig::default()
    };
    let opts =
        DemoOptions { duration: Duration::from_secs(12), generator, partitions: 2, listen: "127.0.0.1:0".into() };
    let (addr_tx, addr_rx) = mpsc::channel();
    let scraper = std::thread::spawn(move || {
        let addr: std::net::SocketAddr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("HTTP server bound");
        // Scrape while the demo runs, until records show up.
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(250));
            let body = ureq::get(&format!("http://{addr}/metrics"))
                .call()
                .expect("GET /metrics")
                .body_mut()
                .read_to_string()
                .expect("body");
            // Summed over topics: peakguard_records_total{topic="..."} N
            let records: f64 = body
                .lines()
                .filter(|l| l.starts_with("peakguard_records_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if records > 0.0 {
                let health = ureq::get(&format!("http://{addr}/healthz")).call().expect("GET /healthz");
                assert_eq!(health.status(), 200);
                return body;
            }
        }
        panic!("no records counted on /metrics within 10 s");
    });
    let on_listen: peakguard::runtime::OnListen = Box::new(move |addr| {
        let _ = addr_tx.send(addr);
    });
    let summary =
        tokio::time::timeout(Duration::from_secs(120), demo::run(opts, CancellationToken::new(), Some(on_listen)))
            .await
            .expect("demo ends by itself")
            .expect("demo runs");
    let scraped = scraper.join().expect("scraper");
    assert!(scraped.contains("peakguard_events_total{kind=\"order\",outcome=\"folded\"}"), "{scraped}");

    assert!(summary.produced > 10_000, "generator produced {}", summary.produced);
    assert_eq!(summary.run.report.decode_errors, 0);
    let spike = summary.spike_shop.clone().expect("a spike was injected");
    let firing: Vec<_> = summary.run.alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    assert!(firing.iter().any(|a| a.shop_id == spike), "spike in {spike} not detected: {firing:#?}");
    assert!(firing.iter().all(|a| a.shop_id == spike), "healthy shop alerted: {firing:#?}");
}

/// `peakguard generate --brokers` produces the synthetic traffic as Avro to
/// a Kafka cluster (here the in-process one, reached over TCP like any other).
#[test]
fn generate_produces_to_a_cluster() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    for kind in peakguard::event::EventKind::ALL {
        cluster.create_topic(&demo::topic_of(*kind), 1, 1).expect("topic");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peakguard"))
        .args(["generate", "--brokers", &cluster.bootstrap_servers(), "--speed", "6000"])
        .args(["--sim-duration", "2m", "--shops", "200", "--orders-per-sec", "20"])
        .output()
        .expect("run peakguard generate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let produced: u64 = stdout.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("count printed");
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("consumer");
    let on_topics: i64 = peakguard::event::EventKind::ALL
        .iter()
        .map(|k| consumer.fetch_watermarks(&demo::topic_of(*k), 0, Duration::from_secs(5)).expect("watermarks").1)
        .sum();
    assert!(produced > 1_000, "{stdout}");
    assert_eq!(on_topics as u64, produced, "every event is on its topic");
}
