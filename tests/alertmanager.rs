//! The Alertmanager sink against a real Alertmanager (Debian package
//! `prometheus-alertmanager`, which `.ci/run` installs) started on loopback by
//! this test: the alert appears with its labels and annotations, a re-send does
//! not duplicate it, and the resolution clears it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::server::{self, Server};
use peakguard::engine::{Counts, Field};
use peakguard::rules::{Alert, Inputs, Metric, RateRule, RuleSet};
use peakguard::sink::alertmanager::AlertmanagerSink;

fn start() -> Server {
    let bin =
        server::binary("ALERTMANAGER_BIN", &["prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager");
    server::start(bin, |dir, port| {
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n").unwrap();
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
        ]
    })
}

fn active_alerts(url: &str) -> Vec<serde_json::Value> {
    let body =
        ureq::get(&format!("{url}/api/v2/alerts")).call().expect("GET alerts").body_mut().read_to_string().unwrap();
    serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rule_set() -> RuleSet {
    let mut rule = RateRule::new("refund_rate_spike", Metric::RefundRate, 0, "5m", 0.1);
    rule.runbook_url = Some("https://wiki.example.com/runbooks/refund-spike".into());
    rule.labels.insert("team".into(), "after-sales".into());
    rule.annotations.insert("dashboard".into(), "https://grafana.example.com/d/peakguard".into());
    RuleSet::new(vec![rule])
}

fn counts(orders: u64, refunds: u64) -> Counts {
    let mut c = Counts::default();
    c.add_at(Field::OrdersPaid as usize, orders);
    c.add_at(Field::RefundsRequested as usize, refunds);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_appears_is_not_duplicated_and_resolves() {
    let server = tokio::task::spawn_blocking(start).await.unwrap();
    let url = server.url.clone();
    let sink = AlertmanagerSink::new(&url, Duration::from_secs(5), 3).unwrap();
    let mut rules = rule_set();
    let fired: Alert =
        rules.evaluate(0, "shop-42", "apparel", &Inputs::of(&counts(100, 40)), now_ms() - 60_000).unwrap();
    assert!(sink.deliver(&fired).await, "POST accepted");

    let get = |url: String| async move { tokio::task::spawn_blocking(move || active_alerts(&url)).await.unwrap() };
    let alerts = get(url.clone()).await;
    let ours: Vec<_> = alerts.iter().filter(|a| a["labels"]["shop_id"] == "shop-42").collect();
    assert_eq!(ours.len(), 1, "{alerts:#?}");
    let a = ours[0];
    assert_eq!(a["labels"]["alertname"], "refund_rate_spike");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["labels"]["scope"], "shop");
    assert_eq!(a["annotations"]["runbook_url"], "https://wiki.example.com/runbooks/refund-spike");
    assert!(a["annotations"]["description"].as_str().unwrap().starts_with("40 of 100"), "{a:#}");
    assert_eq!(a["labels"]["team"], "after-sales", "the rule's own labels");
    assert_eq!(a["annotations"]["dashboard"], "https://grafana.example.com/d/peakguard");
    assert_eq!(a["annotations"]["numerator"], "40");
    assert_eq!(a["annotations"]["denominator"], "100");
    assert_eq!(a["annotations"]["rate"], "0.400000");
    assert_eq!(a["annotations"]["window"], "5m");
    let bound: f64 = a["annotations"]["wilson_lower_bound"].as_str().unwrap().parse().unwrap();
    assert!(bound > 0.1 && bound < 0.4, "{a:#}");

    // A restarted peakguard sends the same incident as a repeat: still one alert.
    let repeat = Alert { repeat: true, ..fired.clone() };
    assert!(sink.deliver(&repeat).await);

    // Re-sending (what happens every minute) keeps one alert.
    assert!(sink.resend().await);
    assert!(sink.resend().await);
    let alerts = get(url.clone()).await;
    assert_eq!(alerts.iter().filter(|a| a["labels"]["shop_id"] == "shop-42").count(), 1, "{alerts:#?}");

    // Resolution: sent with endsAt, the alert leaves the active list.
    let resolved = rules.evaluate(0, "shop-42", "apparel", &Inputs::of(&counts(100, 1)), now_ms() - 1_000).unwrap();
    assert!(sink.deliver(&resolved).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = get(url.clone()).await;
        if !alerts.iter().any(|a| a["labels"]["shop_id"] == "shop-42") {
            break;
        }
        assert!(Instant::now() < deadline, "still active after resolution: {alerts:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sink.resend().await, "nothing firing left to re-send");
    drop(server);
}
