//! Random, truncated, wrong-schema and bit-flipped records mixed into a valid
//! stream, through the real consumer on librdkafka's in-process cluster: no
//! panic, every record either folded (or counted as a duplicate or ignored
//! kind) or dead-lettered with its reason and source in headers, unchanged,
//! and the counts add up: records read = outcomes + decode errors, dead
//! letters = decode errors + late + future, metrics = report.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use peakguard::codec::{wire, SchemaStore};
use peakguard::event::EventKind;
use rand::{Rng, SeedableRng};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use common::*;

/// Records by key; the key says what was done to the record.
fn records(store: &SchemaStore, rng: &mut impl Rng) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut valid = Vec::new();
    for s in 0..30 {
        let shop = format!("shop-{s:03}");
        for i in 0..20 {
            let t = T0 + rng.random_range(0..10 * MINUTE);
            valid.push(if i % 4 == 3 { refund(&shop, i, t) } else { order(&shop, i, t) });
        }
    }
    valid.sort_by_key(|e| e.event_time);
    let refund_id = store.reader_id(EventKind::Refund);
    let mut out = Vec::new();
    for (i, e) in valid.iter().enumerate() {
        let bytes = store.encode(e).expect("encode");
        let topic = if e.kind() == EventKind::Order { ORDERS } else { REFUNDS };
        out.push((topic, format!("valid-{i}"), bytes.clone()));
        match i % 5 {
            0 => {
                let n = rng.random_range(0..200);
                out.push((topic, format!("random-{i}"), (0..n).map(|_| rng.random()).collect()));
            }
            1 => {
                let cut = rng.random_range(0..bytes.len());
                out.push((topic, format!("truncated-{i}"), bytes[..cut].to_vec()));
            }
            2 if e.kind() == EventKind::Order => {
                // An order's body under the refund schema's id.
                let mut wrong = Vec::new();
                wire::write_header(&mut wrong, refund_id);
                wrong.extend_from_slice(&bytes[5..]);
                out.push((topic, format!("wrong-schema-{i}"), wrong));
            }
            3 => {
                let mut flipped = bytes.clone();
                let at = rng.random_range(0..flipped.len());
                flipped[at] ^= 1 << rng.random_range(0..8);
                out.push((topic, format!("flipped-{i}"), flipped));
            }
            _ => {
                // A valid header and a random body.
                let mut body = Vec::new();
                wire::write_header(&mut body, store.reader_id(e.kind()));
                body.extend((0..rng.random_range(0..80)).map(|_| rng.random::<u8>()));
                out.push((topic, format!("random-body-{i}"), body));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_dead_lettered_and_every_record_is_accounted_for() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in [(ORDERS, 2), (REFUNDS, 2), (ALERTS, 1), (DLQ, 1)] {
        cluster.create_topic(t, p, 1).expect("create topic");
    }
    let store = Arc::new(SchemaStore::embedded());
    let seed = std::env::var("BAD_INPUT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    eprintln!("BAD_INPUT_SEED={seed}");
    let recs = records(&store, &mut rand::rngs::StdRng::seed_from_u64(seed));
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
    for (topic, key, bytes) in &recs {
        producer.send(FutureRecord::to(topic).key(key).payload(bytes), Duration::from_secs(5)).await.expect("produce");
    }
    let sent: HashMap<&str, &[u8]> = recs.iter().map(|(_, k, b)| (k.as_str(), b.as_slice())).collect();

    let cfg = cluster_config(&cluster.bootstrap_servers(), "it-bad-input");
    let summary = run_to_end(cfg, store).await;

    let r = &summary.report;
    let s = &r.stats;
    assert_eq!(r.records, recs.len() as u64, "every record read");
    assert_eq!(
        s.folded + s.ignored + s.duplicate + s.late + s.future + r.decode_errors,
        r.records,
        "every record has exactly one outcome: {s:?}, {} undecodable",
        r.decode_errors
    );
    let valid = recs.iter().filter(|(_, k, _)| k.starts_with("valid-")).count() as u64;
    assert!(s.folded >= valid, "every valid event folded ({} of {valid})", s.folded);

    let dead = read_all(&cluster.bootstrap_servers(), DLQ);
    assert_eq!(dead.len() as u64, r.decode_errors + s.late + s.future, "dead letters = undecodable + late + future");
    let m = &summary.metrics;
    let reasons = ["late_event", "future_event"].iter().chain(peakguard::codec::DecodeError::REASONS);
    let counted: u64 = reasons.map(|why| m.dead_letters.with_label_values(&[why]).get()).sum();
    assert_eq!(counted, dead.len() as u64, "peakguard_dead_letters_total adds up to the topic");
    let decode_metric: u64 =
        peakguard::codec::DecodeError::REASONS.iter().map(|why| m.decode_errors.with_label_values(&[why]).get()).sum();
    assert_eq!(decode_metric, r.decode_errors, "peakguard_decode_errors_total adds up");
    assert_eq!(m.dead_letter_failures.get(), 0);

    let mut sources = HashSet::new();
    let mut keys = HashSet::new();
    for (key, payload, headers) in &dead {
        let key = String::from_utf8(key.clone().expect("keyed")).expect("utf-8 key");
        assert_eq!(Some(payload.as_slice()), sent.get(key.as_str()).copied(), "{key} dead-lettered unchanged");
        for h in ["peakguard.reason", "peakguard.source.topic", "peakguard.error"] {
            assert!(headers.get(h).is_some_and(|v| !v.is_empty()), "{key}: header {h} in {headers:?}");
        }
        let source = (
            headers["peakguard.source.topic"].clone(),
            headers["peakguard.source.partition"].parse::<i32>().expect("partition header"),
            headers["peakguard.source.offset"].parse::<i64>().expect("offset header"),
        );
        assert!(sources.insert(source), "{key} dead-lettered once");
        assert!(!key.starts_with("valid-"), "a valid event was dead-lettered: {key} {headers:?}");
        keys.insert(key);
    }
    for (_, key, _) in &recs {
        if key.starts_with("random-") && !key.starts_with("random-body") || key.starts_with("truncated-") {
            assert!(keys.contains(key), "{key} was accepted, not dead-lettered");
        }
    }
    eprintln!(
        "{} records: {} folded, {} duplicate, {} undecodable, {} late/future",
        r.records,
        s.folded,
        s.duplicate,
        r.decode_errors,
        s.late + s.future
    );
}
