//! Alert sinks against real HTTP: the webhook sink POSTs each alert as JSON
//! with an HMAC-SHA256 signature the receiver can check, and a dead sink does
//! not hold up a live one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use peakguard::engine::{Counts, Field};
use peakguard::metrics::Metrics;
use peakguard::rules::{Alert, Inputs, Metric, RateRule, RuleSet};
use peakguard::sink::webhook::{WebhookSink, SIGNATURE_HEADER};
use peakguard::sink::{self, Sink};
use sha2::Sha256;
use tokio::sync::mpsc;

type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A webhook receiver on a free loopback port.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let store = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let sig = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
                store.lock().unwrap().push((sig, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

fn alerts(n: usize) -> Vec<Alert> {
    let rule = RateRule::new("refund_rate_spike", Metric::RefundRate, 0, "5m", 0.1);
    let mut set = RuleSet::new(vec![rule]);
    let mut c = Counts::default();
    c.add_at(Field::OrdersPaid as usize, 100);
    c.add_at(Field::RefundsRequested as usize, 40);
    (0..n).map(|i| set.evaluate(0, &format!("shop-{i}"), "toys", &Inputs::of(&c), 60_000).expect("fires")).collect()
}

#[tokio::test]
async fn webhook_posts_signed_json() {
    let (url, got) = receiver().await;
    let hook = WebhookSink::new(&url, "s3cret", Duration::from_secs(5), 3).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::channel(16);
    let run = tokio::spawn(sink::run(rx, vec![("webhook", Sink::Webhook(hook))], metrics.clone(), Arc::default()));
    let sent = alerts(3);
    for a in &sent {
        tx.send(a.clone()).await.unwrap();
    }
    drop(tx);
    run.await.unwrap();
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    for ((sig, body), a) in got.iter().zip(&sent) {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["fingerprint"], a.fingerprint.as_str());
        assert_eq!(json["status"], "firing");
        // Checked with the hmac crate directly, as a receiver would.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let expect = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sig.as_deref(), Some(expect.as_str()));
    }
    assert_eq!(metrics.sink_deliveries.with_label_values(&["webhook", "ok"]).get(), 3);
    assert_eq!(metrics.sink_queue_depth.with_label_values(&["webhook"]).get(), 0);
}

#[tokio::test]
async fn a_dead_sink_does_not_hold_up_a_live_one() {
    // A port with nothing listening: connections are refused, every attempt retried.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = WebhookSink::new(&format!("http://127.0.0.1:{dead_port}/hook"), "", Duration::from_secs(1), 50).unwrap();
    let (url, got) = receiver().await;
    let live = WebhookSink::new(&url, "", Duration::from_secs(5), 3).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::channel(16);
    let sinks = vec![("dead", Sink::Webhook(dead)), ("live", Sink::Webhook(live))];
    let run = tokio::spawn(sink::run(rx, sinks, metrics.clone(), Arc::default()));
    let started = Instant::now();
    for a in alerts(5) {
        tx.send(a).await.unwrap();
    }
    while got.lock().unwrap().len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(10), "the live sink was held up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.sink_queue_depth.with_label_values(&["dead"]).get() >= 4,
        "the dead sink's alerts wait in its own queue"
    );
    assert_eq!(metrics.sink_deliveries.with_label_values(&["live", "ok"]).get(), 5);
    drop(tx);
    run.abort();
}
