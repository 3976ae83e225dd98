//! Criterion benches of the window engine: folding pre-decoded events (hot
//! shops, and spread over 1M shops; `_live`: the watermark moving as in the
//! pipeline; `_prefetch`: each event's shop and dedup lookups prefetched a
//! few events ahead) and reading every window of one shop.
//! Run: `cargo bench --bench engine`.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use peakguard::engine::window::bucket_of;
use peakguard::engine::{Counts, Engine, EngineConfig, SourceId};

fn fold_all(cfg: &EngineConfig, events: &[peakguard::event::Event]) -> Engine {
    let mut engine = Engine::new(cfg.clone());
    engine.watermark_mut().assign(SourceId(0), 0);
    for e in events {
        black_box(engine.fold(SourceId(0), e, 0));
    }
    engine
}

/// As the pipeline folds: the watermark moves (and dedup forgets the ids it
/// passed by the horizon) every [`common::TICK_EVERY`] events.
fn fold_live(cfg: &EngineConfig, events: &[peakguard::event::Event]) -> Engine {
    let mut engine = Engine::new(cfg.clone());
    engine.watermark_mut().assign(SourceId(0), 0);
    for chunk in events.chunks(common::TICK_EVERY) {
        for e in chunk {
            black_box(engine.fold(SourceId(0), e, 0));
        }
        engine.update_watermark(0);
    }
    engine
}

/// [`fold_live`] with each event's lookups prefetched [`PREFETCH_AHEAD`]
/// events ahead (see [`common::fold_prefetching`]).
fn fold_live_prefetch(cfg: &EngineConfig, events: &[peakguard::event::Event]) -> Engine {
    let mut engine = Engine::new(cfg.clone());
    engine.watermark_mut().assign(SourceId(0), 0);
    for chunk in events.chunks(common::TICK_EVERY) {
        common::fold_prefetching(&mut engine, chunk, PREFETCH_AHEAD);
        engine.update_watermark(0);
    }
    engine
}

/// Events between a prefetch and the fold that uses it (a fold over 1M shops
/// is a few hundred ns; a load from memory about 100).
const PREFETCH_AHEAD: usize = 4;

fn fold(c: &mut Criterion) {
    let cfg = common::config();
    let mut g = c.benchmark_group("fold");
    g.sample_size(10);

    let hot = common::hot_mix(1_000_000);
    g.throughput(Throughput::Elements(hot.len() as u64));
    // The worst case for dedup: no watermark moves, so it fills to its capacity.
    g.bench_function("hot_shops_8", |b| b.iter_batched(|| (), |_| fold_all(&cfg, &hot), BatchSize::PerIteration));
    g.bench_function("hot_shops_8_live", |b| b.iter_batched(|| (), |_| fold_live(&cfg, &hot), BatchSize::PerIteration));
    let mut no_dedup = cfg.clone();
    no_dedup.dedup_capacity = 1;
    g.bench_function("hot_shops_8_dedup_1", |b| {
        b.iter_batched(|| (), |_| fold_all(&no_dedup, &hot), BatchSize::PerIteration)
    });

    let spread = common::zipf_mix(2_000_000, 1_000_000, 3_600_000, 2);
    g.throughput(Throughput::Elements(spread.len() as u64));
    g.bench_function("zipf_1m_shops", |b| b.iter_batched(|| (), |_| fold_all(&cfg, &spread), BatchSize::PerIteration));
    g.bench_function("zipf_1m_shops_live", |b| {
        b.iter_batched(|| (), |_| fold_live(&cfg, &spread), BatchSize::PerIteration)
    });
    g.bench_function("zipf_1m_shops_live_prefetch", |b| {
        b.iter_batched(|| (), |_| fold_live_prefetch(&cfg, &spread), BatchSize::PerIteration)
    });
    g.finish();
}

fn read(c: &mut Criterion) {
    let cfg = common::config();
    let windows = cfg.windows.clone();
    let events = common::zipf_mix(500_000, 10_000, 3_600_000, 3);
    let engine = fold_all(&cfg, &events);
    let wm = events.iter().map(|e| e.event_time).max().unwrap();
    let ends: Vec<i64> = windows.iter().map(|w| bucket_of(wm, w.step_ms) - 1).collect();
    let mut g = c.benchmark_group("read_all_windows");
    // The busiest shop (hot rings with running totals) and a small one.
    let mut shops: Vec<(&str, usize)> =
        engine.shops().map(|(id, _)| (id, events.iter().filter(|e| e.shop_id == id).count())).take(2000).collect();
    shops.sort_by_key(|(_, n)| *n);
    let busy = events[0..1000]
        .iter()
        .map(|e| e.shop_id.as_str())
        .max_by_key(|id| events.iter().filter(|e| e.shop_id == *id).count());
    let small = shops.iter().find(|(_, n)| *n >= 3).map(|(id, _)| *id);
    for (label, id) in [("busy_shop", busy), ("small_shop", small)] {
        let Some(id) = id else { continue };
        let shop = engine.shop(id).expect("shop held");
        // Every counter of every window, written into a reused buffer (as
        // the rules and the query API read), checked against a fresh read.
        let mut out = [Counts::default(), Counts::default(), Counts::default(), Counts::default()];
        for (w, o) in out.iter_mut().enumerate() {
            shop.read_to(w, ends[w], o);
            assert_eq!(*o, shop.read(w, ends[w]), "{label}: read_to and read agree on window {w}");
        }
        g.bench_function(label, |b| {
            b.iter(|| {
                for (w, o) in out.iter_mut().enumerate() {
                    shop.read_to(black_box(w), ends[w], o);
                }
                // By reference: moving the 2.3 KB result into black_box
                // would time a copy of it too.
                black_box(&out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fold, read);
criterion_main!(benches);
