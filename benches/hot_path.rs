//! Decode and the whole in-process hot path.
//!
//! * `decode/<kind>/direct|generic`: one Confluent-framed Avro record of each
//!   event kind through the direct reader and through apache-avro's generic
//!   `Value` path (the reference).
//! * `hot_path`: bytes in -> alerts out on a peak-sale mix over 1,000,000
//!   shops (Zipf popularity, every shop seen once first): decode, fold,
//!   rules every 1,000 events.
//!
//! Run: `cargo bench --bench hot_path`.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peakguard::codec::{self, wire, SchemaStore};
use peakguard::config::Config;
use peakguard::engine::SourceId;
use peakguard::event::{Event, EventKind};
use peakguard::pipeline::Pipeline;

fn decode(c: &mut Criterion) {
    let store = SchemaStore::embedded();
    let events = common::zipf_mix(20_000, 1_000, 3_600_000, 3);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for kind in EventKind::ALL {
        let Some(e) = events.iter().find(|e| e.kind() == *kind) else { continue };
        let bytes = codec::encode(&store, e).expect("encode");
        let (id, body) = wire::split(&bytes).expect("framed");
        assert!(store.is_direct(id));
        g.bench_function(format!("{kind}/direct"), |b| b.iter(|| black_box(store.decode_body(id, black_box(body)))));
        let mut buf = Event::buffer();
        g.bench_function(format!("{kind}/direct_into_buffer"), |b| {
            b.iter(|| black_box(store.decode_body_into(id, black_box(body), &mut buf).is_ok()))
        });
        g.bench_function(format!("{kind}/generic"), |b| {
            b.iter(|| black_box(store.decode_body_generic(id, black_box(body))))
        });
    }
    g.finish();
}

fn hot_path(c: &mut Criterion) {
    let store = SchemaStore::embedded();
    let shops = 1_000_000;
    let mut events = common::every_shop_once(0..shops, 3_600_000, 11);
    events.extend(common::zipf_mix(3_000_000, shops, 3_600_000, 12));
    events.sort_by_key(|e| e.event_time);
    let records: Vec<Vec<u8>> = events.iter().map(|e| codec::encode(&store, e).expect("encode")).collect();
    drop(events);
    let cfg = Config::with_defaults();
    let mut g = c.benchmark_group("hot_path");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("decode+fold+rules, 1M shops", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut p = Pipeline::new(cfg.engine_config(), cfg.rule_book());
                p.assign(SourceId(0), 0);
                let mut alerts = Vec::new();
                let mut buf = Event::buffer();
                let start = Instant::now();
                let mut early = None;
                for (i, r) in records.iter().enumerate() {
                    // As the worker does (`pipeline/prefetch.rs`): the next
                    // record's first lookups, and this one's shop entry,
                    // start loading before the decode.
                    let next = records.get(i + 1).and_then(|n| p.prefetch_next(&store, SourceId(0), n));
                    p.prefetch_record(&store, SourceId(0), r, early.take());
                    early = next;
                    if codec::decode_into(&store, r, &mut buf).is_ok() {
                        p.ingest(SourceId(0), &buf, 0);
                    }
                    if i % 1_000 == 999 {
                        p.tick(0, &mut alerts);
                    }
                }
                p.finish(&mut alerts);
                total += start.elapsed();
                black_box(alerts.len());
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, decode, hot_path);
criterion_main!(benches);
