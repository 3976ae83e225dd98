//! Criterion benches of the window engine: folding pre-decoded events (hot
//! shops, and spread over 1M shops; `_live`: the watermark moving as in the
//! pipeline; `_prefetch`: each event's shop and dedup lookups prefetched a
//! few events ahead; `_cached`: each event in the cache when it is folded,
//! as the pipeline folds the event it has just decoded) and reading every
//! window of one shop.
//! Run: `cargo bench --bench engine`.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use peakguard::engine::window::bucket_of;
use peakguard::engine::{Counts, Engine, EngineConfig, SourceId};

/// An engine of `cfg` with its one source (`SourceId(0)`) assigned.
fn engine_reading_one_source(cfg: &EngineConfig) -> Engine {
    let mut engine = Engine::new(cfg.clone());
    engine.watermark_mut().assign(SourceId(0), 0);
    engine
}

fn fold_all(cfg: &EngineConfig, events: &[peakguard::event::Event]) -> Engine {
    let mut engine = engine_reading_one_source(cfg);
    for e in events {
        black_box(engine.fold(SourceId(0), e, 0));
    }
    engine
}

/// As the pipeline folds: the watermark moves (and dedup forgets the ids it
/// passed by the horizon) every [`common::TICK_EVERY`] events.
fn fold_live(cfg: &EngineConfig, events: &[peakguard::event::Event]) -> Engine {
    let mut engine = engine_reading_one_source(cfg);
    for chunk in events.chunks(common::TICK_EVERY) {
        for e in chunk {
            black_box(engine.fold(SourceId(0), e, 0));
        }
        engine.update_watermark(0);
    }
    engine
}

/// Reads what a fold reads first of each event, and nothing else.
fn read_events(events: &[peakguard::event::Event]) -> u64 {
    let mut sum = 0u64;
    for e in events {
        let last = |s: &str| s.as_bytes().last().copied().unwrap_or(0) as u64;
        sum = sum.wrapping_add(e.event_time as u64 ^ last(&e.shop_id) ^ last(&e.event_id) ^ last(&e.category));
        sum = sum.wrapping_add(e.kind() as u64);
    }
    black_box(sum)
}

/// Events copied at a time by [`fold_live_cached`]: about 70 KB of events
/// and their ids, which the copy leaves in the cache.
const CACHED_EVENTS: usize = 256;

/// [`fold_live`], timing only the folds and watermark moves, of events
/// copied into the cache (untimed) [`CACHED_EVENTS`] at a time. The pipeline
/// folds each event right after decoding it into a reused buffer, so its
/// events are always in the cache; 1M pre-decoded events (about 270 bytes
/// each with their ids) are not, and reading them from memory alone takes
/// about 22 ns an event here (BENCHMARKS.md, session 15), a third of a hot
/// fold.
fn fold_live_cached(cfg: &EngineConfig, events: &[peakguard::event::Event]) -> Duration {
    let mut engine = engine_reading_one_source(cfg);
    let mut timed = Duration::ZERO;
    // Copied into the same strings each time (as the pipeline decodes into
    // a reused event), so the copies allocate nothing among the engine's state.
    let mut copy: Vec<peakguard::event::Event> = Vec::new();
    for chunk in events.chunks(common::TICK_EVERY) {
        for part in chunk.chunks(CACHED_EVENTS) {
            if copy.len() == part.len() {
                copy.clone_from_slice(part);
            } else {
                copy = part.to_vec();
            }
            let start = Instant::now();
            for e in &copy {
                black_box(engine.fold(SourceId(0), e, 0));
            }
            timed += start.elapsed();
        }
        let start = Instant::now();
        engine.update_watermark(0);
        timed += start.elapsed();
    }
    black_box(engine.shop_count());
    timed
}

/// [`fold_live`] with each event's lookups prefetched [`PREFETCH_AHEAD`]
/// events ahead (see [`common::fold_prefetching`]).
fn fold_live_prefetch(cfg: &EngineConfig, events: &[peakguard::event::Event]) -> Engine {
    let mut engine = engine_reading_one_source(cfg);
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
    // What reading the pre-decoded events alone costs: the fields a fold
    // reads first (time, ids, category, kind), from memory, and nothing else.
    g.bench_function("hot_shops_8_read_only", |b| b.iter(|| read_events(&hot)));
    g.bench_function("hot_shops_8_live_cached", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fold_live_cached(&cfg, &hot)).sum())
    });
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
    g.bench_function("zipf_1m_shops_live_cached", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fold_live_cached(&cfg, &spread)).sum())
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
    // The busiest shop (hot rings with running totals), a middling one and a small one.
    let mut shops: Vec<(&str, usize)> =
        engine.shops().map(|(id, _)| (id, events.iter().filter(|e| e.shop_id == id).count())).take(2000).collect();
    shops.sort_by_key(|(_, n)| *n);
    let busy = events[0..1000]
        .iter()
        .map(|e| e.shop_id.as_str())
        .max_by_key(|id| events.iter().filter(|e| e.shop_id == *id).count());
    let small = shops.iter().find(|(_, n)| *n >= 3).map(|(id, _)| *id);
    // About 40 events: a long cold list (`cold::COLD_LIST_CELLS`), each
    // read a scan of it back to the window's start.
    let mid = shops.iter().min_by_key(|(_, n)| n.abs_diff(40)).map(|(id, _)| *id);
    for (label, id) in [("busy_shop", busy), ("mid_shop", mid), ("small_shop", small)] {
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
