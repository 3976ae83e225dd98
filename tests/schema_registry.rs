//! The schema registry client: writer schemas of ids the local store does
//! not list are fetched from a Confluent-compatible registry API
//! (`GET /schemas/ids/{id}`, basic auth), cached, retried on 5xx, and
//! resolved against the local reader schemas; then the same end to end on
//! the in-process cluster.
//!
//! The registry here is a small HTTP server speaking the documented
//! Confluent API, started by the test: no Confluent-compatible registry
//! (Confluent's, Karapace, Apicurio) installs from crates.io, PyPI, npm or
//! Debian, which are what CI can reach.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::Schema;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use peakguard::codec::registry::{Registry, RegistryConfig};
use peakguard::codec::{wire, SchemaStore};
use peakguard::event::{EventBody, Reason};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use common::*;

const USER: &str = "key";
const PASSWORD: &str = "hunter2-pw";
/// Fails twice with 503 before answering.
const FLAKY: u32 = 500;

#[derive(Default)]
struct Served {
    schemas: HashMap<u32, String>,
    requests: Mutex<HashMap<u32, usize>>,
    flaky_failures: AtomicUsize,
}

async fn schema_by_id(
    State(s): State<Arc<Served>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, (StatusCode, Json<serde_json::Value>)> {
    *s.requests.lock().unwrap().entry(id).or_default() += 1;
    // base64("key:hunter2-pw")
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic a2V5Omh1bnRlcjItcHc=") {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error_code": 401, "message": "Unauthorized"})),
        ));
    }
    if id == FLAKY && s.flaky_failures.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err((StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error_code": 50003}))));
    }
    let id = if id == FLAKY { 100 } else { id };
    match s.schemas.get(&id) {
        Some(text) => Ok(Json(serde_json::json!({ "schema": text }))),
        None => {
            Err((StatusCode::NOT_FOUND, Json(serde_json::json!({"error_code": 40403, "message": "Schema not found"}))))
        }
    }
}

/// A refund schema older than the shipped one (no sub_order_id, no
/// requested_at) and one newer (an extra reason symbol); ids 100 and 109.
fn evolved_refunds() -> HashMap<u32, String> {
    let shipped: serde_json::Value =
        serde_json::from_str(include_str!("../schemas/refund.avsc")).expect("shipped refund schema");
    let mut v0 = shipped.clone();
    v0["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "sub_order_id" && f["name"] != "requested_at");
    let mut v9 = shipped;
    for f in v9["fields"].as_array_mut().unwrap() {
        if f["name"] == "reason" {
            f["type"]["symbols"].as_array_mut().unwrap().insert(0, "COUNTERFEIT".into());
        }
    }
    HashMap::from([(100, v0.to_string()), (109, v9.to_string())])
}

async fn start_registry() -> (String, Arc<Served>) {
    let served = Arc::new(Served { schemas: evolved_refunds(), ..Default::default() });
    let app = Router::new().route("/schemas/ids/{id}", get(schema_by_id)).with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("registry serves") });
    (url, served)
}

fn config(url: &str, password: &str) -> RegistryConfig {
    RegistryConfig {
        url: url.to_string(),
        username: USER.into(),
        password: password.into(),
        timeout: Duration::from_secs(5),
        attempts: 3,
    }
}

/// A v0 (id 100) or v9 (id 109) refund record, framed.
fn refund_record(id: u32, text: &str, shop: &str, n: usize, t: i64) -> Vec<u8> {
    let schema = Schema::parse_str(text).unwrap();
    let mut f = vec![
        ("event_id".to_string(), Value::String(format!("{shop}-v{id}-{n}"))),
        ("shop_id".to_string(), Value::String(shop.into())),
        ("order_id".to_string(), Value::String(format!("{shop}-order-{n}"))),
    ];
    if id == 109 {
        f.push(("sub_order_id".to_string(), Value::Union(0, Box::new(Value::Null))));
    }
    f.extend([
        ("event_time".to_string(), Value::TimestampMillis(t)),
        ("category".to_string(), Value::String("apparel".into())),
        ("type".to_string(), Value::Enum(0, "REQUESTED".into())),
        ("refund_type".to_string(), Value::Enum(0, "REFUND_ONLY".into())),
        ("stage".to_string(), Value::Enum(0, "PRE_SHIPMENT".into())),
        (
            "reason".to_string(),
            if id == 109 { Value::Enum(0, "COUNTERFEIT".into()) } else { Value::Enum(1, "QUALITY_DAMAGED".into()) },
        ),
        ("amount_minor".to_string(), Value::Long(9_900)),
        ("currency".to_string(), Value::String("CNY".into())),
        ("order_paid_at".to_string(), Value::TimestampMillis(t - MINUTE)),
    ]);
    if id == 109 {
        f.push(("requested_at".to_string(), Value::Union(1, Box::new(Value::TimestampMillis(t - 2)))));
    }
    let mut out = Vec::new();
    wire::write_header(&mut out, id);
    out.extend(apache_avro::to_avro_datum(&schema, Value::Record(f)).expect("valid datum"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_schemas_come_from_the_registry_cached_and_retried() {
    let (url, served) = start_registry().await;
    let schemas = evolved_refunds();
    tokio::task::spawn_blocking(move || {
        let store = SchemaStore::embedded();
        let mut registry = Registry::new(config(&url, PASSWORD)).unwrap();
        let split = |bytes: &[u8]| wire::split(bytes).map(|(id, b)| (id, b.to_vec())).unwrap();

        // An older writer: fields it lacks take the reader's defaults.
        let (id, body) = split(&refund_record(100, &schemas[&100], "s", 1, T0));
        let old = registry.decode(&store, id, &body).expect("v0 decodes");
        assert!(matches!(old.body, EventBody::Refund { reason: Reason::QualityDamaged, requested_at: None, .. }));
        // A newer writer: an unknown enum symbol reads as the default.
        let (id, body) = split(&refund_record(109, &schemas[&109], "s", 2, T0));
        let new = registry.decode(&store, id, &body).expect("v9 decodes");
        assert!(matches!(new.body, EventBody::Refund { reason: Reason::Other, requested_at: Some(_), .. }));
        for _ in 0..5 {
            registry.decode(&store, id, &body).expect("cached");
        }
        let count = |id: u32| served.requests.lock().unwrap().get(&id).copied().unwrap_or(0);
        assert_eq!((count(100), count(109)), (1, 1), "each id fetched once");

        // 503 twice, then the schema: retried within one decode.
        let (_, body) = split(&refund_record(100, &schemas[&100], "s", 3, T0));
        registry.decode(&store, FLAKY, &body).expect("retried until the registry answered");
        assert_eq!(count(FLAKY), 3);

        // Unknown id: dead-letter reason, and remembered for a while.
        let err = registry.decode(&store, 7777, &body).unwrap_err();
        assert_eq!(err.reason(), "unknown_schema_id", "{err}");
        registry.decode(&store, 7777, &body).unwrap_err();
        assert_eq!(count(7777), 1, "a missing id is not asked for again at once");

        // Wrong credentials: not retried, reported as unavailable.
        let mut wrong = Registry::new(config(&url, "nope")).unwrap();
        let err = wrong.decode(&store, 109, &body).unwrap_err();
        assert_eq!(err.reason(), "schema_registry_unavailable");
        assert!(err.to_string().contains("401"), "{err}");

        // Nobody listening: retried, then unavailable.
        let mut down = Registry::new(config("http://127.0.0.1:9", PASSWORD)).unwrap();
        let err = down.decode(&store, 109, &body).unwrap_err();
        assert_eq!(err.reason(), "schema_registry_unavailable");
        assert!(err.to_string().contains("after 3 attempt(s)"), "{err}");
    })
    .await
    .expect("client test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_decodes_records_of_registry_schemas() {
    let (url, served) = start_registry().await;
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in [(ORDERS, 1), (REFUNDS, 1), (ALERTS, 1), (DLQ, 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    let store = Arc::new(SchemaStore::embedded());
    let events = orders("shop-a", 5, 3);
    produce(&cluster.bootstrap_servers(), &store, &events).await;
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
    let schemas = evolved_refunds();
    let mut sent = 0;
    for (i, id) in [100u32, 109, 100, 109, 4242].into_iter().enumerate() {
        let text = schemas.get(&id).unwrap_or(&schemas[&100]);
        let bytes = refund_record(id, text, "shop-a", i, T0 + MINUTE + i as i64 * 1_000);
        producer.send(FutureRecord::to(REFUNDS).key("shop-a").payload(&bytes), Duration::from_secs(5)).await.unwrap();
        sent += 1;
    }

    let mut cfg = cluster_config(&cluster.bootstrap_servers(), "it-registry");
    cfg.schemas.registry_url = url;
    cfg.schemas.registry_username = USER.into();
    cfg.schemas.registry_password = PASSWORD.into();
    assert!(!format!("{cfg:?}").contains(PASSWORD), "the registry password is redacted");
    let summary = run_to_end(cfg, store).await;
    let r = &summary.report;
    assert_eq!(r.records, events.len() as u64 + sent);
    assert_eq!(r.stats.folded, events.len() as u64 + sent - 1, "every registry-schema refund folded");
    assert_eq!(r.decode_errors, 1, "id 4242 is in no registry");
    let dead = read_all(&cluster.bootstrap_servers(), DLQ);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].2.get("peakguard.reason").map(String::as_str), Some("unknown_schema_id"));
    let requests = served.requests.lock().unwrap().clone();
    assert_eq!((requests.get(&100), requests.get(&109)), (Some(&1), Some(&1)), "fetched once each: {requests:?}");
    // The fetches are on /metrics, by result.
    let fetches = |result: &str| summary.metrics.registry_fetches.with_label_values(&[result]).get();
    assert_eq!((fetches("fetched"), fetches("unknown_schema_id")), (2, 1));
    assert_eq!(fetches("schema_registry_unavailable"), 0);
}
