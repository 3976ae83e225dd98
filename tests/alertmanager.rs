//! The Alertmanager sink against a real Alertmanager (Debian package
//! `prometheus-alertmanager`, which `.ci/run` installs) started on loopback by
//! this test: the alert appears with its labels and annotations, a re-send does
//! not duplicate it, and the resolution clears it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peakguard::engine::{Counts, Field};
use peakguard::rules::{Alert, Inputs, Metric, RateRule, RuleSet};
use peakguard::sink::alertmanager::AlertmanagerSink;

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("ALERTMANAGER_BIN") {
        return PathBuf::from(p);
    }
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no Alertmanager binary: install the Debian package prometheus-alertmanager (.ci/run does) or set ALERTMANAGER_BIN");
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Alertmanager");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ureq::get(&format!("{url}/-/ready")).call().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "Alertmanager did not become ready on {url} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child, url, _dir: dir }
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
